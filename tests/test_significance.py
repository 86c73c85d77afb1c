"""The † test: seed-level t-tests, the id bootstrap's p-value, their intersection and Holm's correction, checked by
hand and by simulation (a real effect is found; pure noise is marked at about the nominal rate)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from fr_bench.reports.stats import (bootstrap_p, holm, paired_bootstrap, seed_paired_test, significance,
                                    t_two_sided_p_real, welch_test)


def test_seed_paired_test_is_the_issue_example() -> None:
    """Per-seed Avg differences 0.067, 0.020, 0.017 (FusionRoute vs SFT-only): p ~ 0.17, not significant."""
    a = {0: 0.70, 1: 0.71, 2: 0.72}
    b = {0: 0.767, 1: 0.730, 2: 0.737}
    test = seed_paired_test(a, b)
    d = np.array([0.067, 0.020, 0.017])
    t = d.mean() / (d.std(ddof=1) / math.sqrt(3))
    assert test.kind == "paired" and test.df == 2
    assert test.t == pytest.approx(t, rel=1e-9)
    assert test.p == pytest.approx(2 * sps.t.sf(t, 2), rel=1e-7)
    assert 0.15 < test.p < 0.18


def test_one_run_side_is_held_constant() -> None:
    test = seed_paired_test({0: 0.5}, {0: 0.6, 1: 0.7, 2: 0.8})
    assert test.kind == "one-sample" and test.diff == pytest.approx(0.2)
    assert test.p == pytest.approx(sps.ttest_1samp([0.6, 0.7, 0.8], 0.5).pvalue, rel=1e-7)
    reverse = seed_paired_test({0: 0.6, 1: 0.7, 2: 0.8}, {0: 0.5})
    assert reverse.diff == pytest.approx(-0.2) and reverse.p == pytest.approx(test.p)
    assert seed_paired_test({0: 0.5}, {0: 0.9}).kind == "none"


def test_t_p_values_match_scipy() -> None:
    for t, df in ((0.5, 1), (2.0, 2), (4.3, 2), (3.1, 5), (1.96, 40)):
        assert t_two_sided_p_real(t, df) == pytest.approx(2 * sps.t.sf(t, df), rel=1e-7)
    a, b = [0.50, 0.62, 0.55, 0.58], [0.70, 0.72, 0.69]
    w = welch_test(a, b)
    ref = sps.ttest_ind(b, a, equal_var=False)
    assert w.kind == "welch" and w.t == pytest.approx(ref.statistic, rel=1e-9)
    assert w.p == pytest.approx(ref.pvalue, rel=1e-7)
    for t, df in ((0.3, 1.5), (2.5, 2.37), (8.0, 7.9)):
        assert t_two_sided_p_real(t, df) == pytest.approx(2 * sps.t.sf(t, df), rel=1e-7)


def test_zero_variance_seeds_defer_to_the_id_test() -> None:
    test = seed_paired_test({0: 0.5, 1: 0.5, 2: 0.5}, {0: 0.51, 1: 0.51, 2: 0.51})
    assert test.p == 0.0  # no training variance seen: the seed test cannot object ...
    ids = paired_bootstrap({(s, str(i)): float(i % 2) for s in range(3) for i in range(100)},
                           {(s, str(i)): float(i % 2 or i == 2) for s in range(3) for i in range(100)})
    sig = significance(ids, test)
    assert sig.p == sig.p_ids > 0.05 and not sig.significant  # ... and one flipped sample in 100 is no evidence


def test_bootstrap_p_is_a_wald_test_with_the_bootstrap_se() -> None:
    ids = paired_bootstrap({(0, str(i)): 0.0 for i in range(400)},
                           {(0, str(i)): float(i < 10) for i in range(400)}, n_resamples=4000, seed=1)
    se = float(np.std(ids.resampled, ddof=1))
    assert se == pytest.approx(math.sqrt(0.025 * 0.975 / 400), rel=0.1)  # the binomial standard error
    assert bootstrap_p(ids) == pytest.approx(math.erfc(0.025 / se / math.sqrt(2)), rel=1e-9)


def test_holm_by_hand() -> None:
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.5})
    assert adjusted == pytest.approx({"a": 0.04, "c": 0.09, "b": 0.09, "d": 0.5})
    assert holm({}) == {}


def _simulate(rng: np.random.Generator, effect: float, seed_sd: float, n_ids: int = 150, seeds: int = 3):
    """Per-sample 0/1 scores of two methods on shared ids: id difficulty, a per-(method, seed) training offset."""
    q = rng.uniform(0.2, 0.8, n_ids)
    out = []
    for shift in (0.0, effect):
        scores = {}
        for s in range(seeds):
            p = np.clip(q + shift + rng.normal(0, seed_sd), 0, 1)
            for i, hit in enumerate(rng.random(n_ids) < p):
                scores[(s, str(i))] = float(hit)
        out.append(scores)
    return out


def _per_seed(values: dict[tuple[int, str], float]) -> dict[int, float]:
    seeds = sorted({k[0] for k in values})
    return {s: float(np.mean([v for k, v in values.items() if k[0] == s])) for s in seeds}


def _rates(rng, effect: float, seed_sd: float, sims: int) -> tuple[float, float]:
    """(rate of † from the combined test, rate from the id bootstrap alone) at the 5 % level."""
    combined = ids_only = 0
    for k in range(sims):
        a, b = _simulate(rng, effect, seed_sd)
        ids = paired_bootstrap(a, b, n_resamples=500, seed=k)
        sig = significance(ids, seed_paired_test(_per_seed(a), _per_seed(b)))
        combined += sig.significant
        ids_only += sig.p_ids < 0.05
    return combined / sims, ids_only / sims


@pytest.mark.slow
def test_noise_is_marked_at_about_the_nominal_rate() -> None:
    rng = np.random.default_rng(0)
    # training variance dominates: resampling ids alone marks most noise as significant; the seed test does not
    combined, ids_only = _rates(rng, 0.0, 0.08, 300)
    assert combined <= 0.08 and ids_only > 0.3
    # no training variance: the id bootstrap decides, at about its nominal level
    combined, _ = _rates(rng, 0.0, 0.0, 300)
    assert 0.01 <= combined <= 0.09


@pytest.mark.slow
def test_a_real_effect_is_found() -> None:
    rng = np.random.default_rng(1)
    combined, _ = _rates(rng, 0.25, 0.02, 100)
    assert combined >= 0.85


def test_holm_keeps_the_family_wise_rate() -> None:
    """20 null comparisons per table: uncorrected, most tables show a false †; Holm keeps it near 5 %."""
    rng = np.random.default_rng(2)
    any_raw = any_holm = 0
    tables = 300
    for _ in range(tables):
        p = {i: float(v) for i, v in enumerate(rng.uniform(size=20))}
        any_raw += min(p.values()) < 0.05
        any_holm += min(holm(p).values()) < 0.05
    assert any_raw / tables > 0.5 and any_holm / tables <= 0.08
