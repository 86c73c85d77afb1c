"""Statistics on constructed data whose answers are known in closed form or by construction."""
from __future__ import annotations

import math

import numpy as np
import pytest

from fr_bench.reports.stats import (average_paired, bootstrap_interval, bootstrap_means, paired_bootstrap,
                                    t_interval, t_quantile)


@pytest.mark.parametrize("df, expected", [(1, 12.7062047362), (2, 4.3026527297), (3, 3.1824463053),
                                          (4, 2.7764451052), (9, 2.2621571628), (30, 2.0422724563),
                                          (1000, 1.9623390808)])
def test_t_quantile_matches_tables(df: int, expected: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-8)


def test_t_quantile_closed_forms() -> None:
    # df=1 is Cauchy: q = tan(pi (p - 1/2)); df=2: q = (2p-1) sqrt(2 / (4 p (1-p)))
    for p in (0.6, 0.9, 0.995):
        assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)
        assert t_quantile(p, 2) == pytest.approx((2 * p - 1) * math.sqrt(2 / (4 * p * (1 - p))), rel=1e-9)


def test_t_interval_by_hand() -> None:
    iv = t_interval([1.0, 0.75, 0.75])
    # mean 5/6, sd = sqrt(((1/6)^2 + 2 (1/12)^2) / 2) = 0.144338, se = sd / sqrt(3), t(0.975, 2) = 4.302653
    half = 4.302652729749 * 0.14433756729740643 / math.sqrt(3)
    assert iv.mean == pytest.approx(5 / 6)
    assert (iv.low, iv.high) == pytest.approx((5 / 6 - half, 5 / 6 + half))
    assert iv.kind == "t" and iv.n == 3
    with pytest.raises(ValueError, match="at least 2"):
        t_interval([0.5])


def test_t_interval_coverage() -> None:
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(2000):
        iv = t_interval(rng.normal(3.0, 2.0, size=4))
        covered += iv.low <= 3.0 <= iv.high
    assert 0.93 <= covered / 2000 <= 0.97


def test_bootstrap_interval_constant_and_binomial() -> None:
    iv = bootstrap_interval([0.7] * 50)
    assert (iv.mean, iv.low, iv.high) == pytest.approx((0.7, 0.7, 0.7))
    assert (iv.kind, iv.n) == ("bootstrap", 50)
    # 400 Bernoulli(0.5) outcomes: the normal-theory 95% half-width is 1.96 * 0.5 / 20 = 0.049
    values = [1.0] * 200 + [0.0] * 200
    iv = bootstrap_interval(values, n_resamples=4000, seed=3)
    assert iv.mean == 0.5
    assert iv.half_width == pytest.approx(0.049, abs=0.005)
    assert bootstrap_interval(values, seed=3) == bootstrap_interval(values, seed=3)  # seeded


def test_bootstrap_means_discrete_support() -> None:
    # mean of 2 draws from {0, 1}: 0 w.p. 1/4, 0.5 w.p. 1/2, 1 w.p. 1/4
    dist = bootstrap_means([0.0, 1.0], n_resamples=20000, seed=0)
    assert set(np.unique(dist)) == {0.0, 0.5, 1.0}
    assert np.mean(dist == 0.5) == pytest.approx(0.5, abs=0.02)


def _keys(values: list[list[float]]) -> dict[tuple[int, str], float]:
    """values[id][seed] -> {(seed, id): value}."""
    return {(s, f"id{i}"): v for i, row in enumerate(values) for s, v in enumerate(row)}


def test_paired_bootstrap_constant_difference_is_exact() -> None:
    a = _keys([[0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    b = {k: v + 0.25 for k, v in a.items()}
    d = paired_bootstrap(a, b)
    assert d.diff == pytest.approx(0.25)
    assert (d.low, d.high) == pytest.approx((0.25, 0.25))
    assert d.significant and d.n_ids == 3 and d.n_pairs == 6
    assert (d.mean_a, d.mean_b) == pytest.approx((0.5, 0.75))


def test_pairing_cancels_sample_difficulty() -> None:
    # Scores vary hugely across ids, but b is always a + 0.02: paired, the difference is certain; unpaired
    # (two independent bootstraps) it would be lost in the id-to-id spread.
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 10, size=200)
    a = {(0, f"id{i}"): float(x) for i, x in enumerate(base)}
    b = {(0, f"id{i}"): float(x) + 0.02 + 0.001 * rng.standard_normal() for i, x in enumerate(base)}
    d = paired_bootstrap(a, b, seed=1)
    assert d.significant and 0.015 < d.low < d.high < 0.025
    unpaired = bootstrap_means(list(b.values()), seed=2) - bootstrap_means(list(a.values()), seed=3)
    assert np.quantile(unpaired, 0.025) < 0 < np.quantile(unpaired, 0.975)


def test_paired_bootstrap_known_discrete_quantiles() -> None:
    # per-id differences (0, 0, 0, -1): the mean of 4 draws is -k/4, k ~ Binomial(4, 1/4).
    # P(k = 0) = 0.316 > 2.5%  -> upper bound 0 (not significant); P(k >= 3) = 5.1%, P(k = 4) = 0.4% -> lower -0.75
    a = _keys([[1.0], [1.0], [1.0], [1.0]])
    b = _keys([[1.0], [1.0], [1.0], [0.0]])
    d = paired_bootstrap(a, b, n_resamples=20000, seed=7)
    assert d.diff == -0.25
    assert (d.low, d.high) == (-0.75, 0.0)
    assert not d.significant


def test_ids_are_the_resampling_unit_and_seeds_move_together() -> None:
    # Every id has seed differences (+1, -1): the per-id mean difference is 0, so a cluster bootstrap over ids
    # gives exactly [0, 0]; resampling (seed, id) pairs independently would not.
    a = _keys([[0.0, 1.0]] * 10)
    b = _keys([[1.0, 0.0]] * 10)
    d = paired_bootstrap(a, b)
    assert (d.diff, d.low, d.high) == (0.0, 0.0, 0.0)
    assert d.n_ids == 10 and d.n_pairs == 20


def test_only_shared_keys_are_paired_and_seedless_pairing() -> None:
    a = _keys([[1.0, 1.0], [0.0, 0.0]])
    b = {(0, "id0"): 0.0, (0, "id1"): 1.0, (0, "only_b"): 1.0}
    d = paired_bootstrap(a, b)
    assert d.n_pairs == 2 and d.diff == 0.0
    # different seeds on each side: pair per id on each side's seed mean
    b_other_seeds = {(5, "id0"): 0.0, (6, "id0"): 1.0, (5, "id1"): 1.0, (6, "id1"): 1.0}
    with pytest.raises(ValueError, match="share no"):
        paired_bootstrap(a, b_other_seeds)
    d = paired_bootstrap(a, b_other_seeds, pair_on_seed=False)
    assert d.diff == pytest.approx(((0.5 - 1.0) + (1.0 - 0.0)) / 2)
    assert d.n_ids == 2


def test_paired_bootstrap_seeded() -> None:
    a = _keys([[float(i % 3 == 0)] for i in range(30)])
    b = _keys([[float(i % 2 == 0)] for i in range(30)])
    assert paired_bootstrap(a, b, seed=4) == paired_bootstrap(a, b, seed=4)
    assert paired_bootstrap(a, b, seed=[4, 1]).low == paired_bootstrap(a, b, seed=[4, 1]).low


def test_average_paired_is_stratified_mean() -> None:
    d1 = paired_bootstrap(_keys([[0.0]] * 5), _keys([[1.0]] * 5))        # +1 for sure
    d2 = paired_bootstrap(_keys([[1.0]] * 5), _keys([[1.0]] * 5))        # 0 for sure
    avg = average_paired([d1, d2])
    assert (avg.diff, avg.low, avg.high) == (0.5, 0.5, 0.5)
    assert avg.n_ids == 10 and avg.significant
    with pytest.raises(ValueError):
        average_paired([])


def test_paired_bootstrap_coverage() -> None:
    # b - a ~ N(0.1, 1) per id; the 95% CI should cover 0.1 in about 95% of repetitions.
    rng = np.random.default_rng(5)
    covered = 0
    trials = 200
    for t in range(trials):
        diff = rng.normal(0.1, 1.0, size=60)
        a = {(0, str(i)): 0.0 for i in range(60)}
        b = {(0, str(i)): float(x) for i, x in enumerate(diff)}
        d = paired_bootstrap(a, b, n_resamples=1000, seed=t)
        covered += d.low <= 0.1 <= d.high
    assert 0.89 <= covered / trials <= 0.99
