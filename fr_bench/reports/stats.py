"""Confidence intervals for benchmark scores and paired bootstrap tests against a reference method.

- Across seeds: a Student-t interval of the per-seed scores (seeds are the independent replications).
- One seed: a percentile bootstrap over samples (the only variability we can see is which samples were drawn).
- Method vs reference: a paired bootstrap over sample ids. Both methods are scored on the same ids (and seeds), so
  resampling ids keeps each id's pair together and cancels the id's difficulty; all seeds of an id move together
  (a cluster bootstrap), because seeds of the same prompt are not independent draws of the benchmark.

Everything is vectorised over resamples and seeded, so a report renders the same numbers every time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

# Resample-matrix elements held at once (resamples x ids); larger problems are processed in chunks.
_CHUNK_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class Interval:
    """A point estimate with a confidence interval; `kind` says how it was made ("t", "bootstrap" or "none")."""

    mean: float
    low: float
    high: float
    kind: str
    n: int  # seeds for "t", samples for "bootstrap"

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


@dataclass(frozen=True)
class PairedDiff:
    """Difference `b - a` of mean scores on paired samples, with its bootstrap CI."""

    diff: float
    low: float
    high: float
    mean_a: float
    mean_b: float
    n_ids: int
    n_pairs: int
    confidence: float
    resampled: np.ndarray = field(repr=False, compare=False)  # the bootstrap distribution of `diff`

    @property
    def significant(self) -> bool:
        """The CI excludes 0 (a two-sided test at level 1 - confidence, in the bootstrap sense)."""
        return self.low > 0 or self.high < 0


def _t_two_sided_mass(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with integer df, by the closed-form series (Abramowitz & Stegun 26.7.3/4)."""
    theta = math.atan(t / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    c2 = c * c
    if df % 2 == 1:
        total, term = 0.0, 1.0
        if df > 1:
            total = 1.0
            for k in range(1, (df - 3) // 2 + 1):
                term *= (2 * k) / (2 * k + 1) * c2
                total += term
        return 2 / math.pi * (theta + s * c * total)
    total, term = 1.0, 1.0
    for k in range(1, (df - 2) // 2 + 1):
        term *= (2 * k - 1) / (2 * k) * c2
        total += term
    return s * total


def t_quantile(p: float, df: int) -> float:
    """The p-quantile (p > 0.5) of Student's t with df degrees of freedom (bisection on the exact CDF)."""
    if not 0.5 < p < 1:
        raise ValueError(f"t_quantile needs 0.5 < p < 1, got {p}")
    if df < 1:
        raise ValueError(f"t_quantile needs df >= 1, got {df}")
    target = 2 * p - 1
    lo, hi = 0.0, 1.0
    while _t_two_sided_mass(hi, df) < target:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if _t_two_sided_mass(mid, df) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2


def t_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean and t-interval of independent replications (e.g. per-seed scores); needs at least 2 values."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        raise ValueError(f"t_interval needs at least 2 values, got {x.size}; use bootstrap_interval for one seed")
    mean = float(x.mean())
    half = t_quantile(0.5 + confidence / 2, x.size - 1) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return Interval(mean, mean - half, mean + half, "t", int(x.size))


def make_rng(seed: int | Sequence[int]) -> np.random.Generator:
    return np.random.default_rng(seed)


def resample_index(n: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Indices [n_resamples, n] of n items drawn with replacement."""
    return rng.integers(0, n, size=(n_resamples, n))


def bootstrap_means(values: Sequence[float], n_resamples: int = 2000,
                    seed: int | Sequence[int] = 0) -> np.ndarray:
    """The bootstrap distribution (n_resamples,) of the mean of `values`."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("bootstrap_means needs at least one value")
    return _cluster_ratio(x, np.ones_like(x), n_resamples, make_rng(seed))


def percentile_bounds(distribution: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    alpha = 1 - confidence
    low, high = np.quantile(distribution, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def bootstrap_interval(values: Sequence[float], confidence: float = 0.95, n_resamples: int = 2000,
                       seed: int | Sequence[int] = 0) -> Interval:
    """Mean of per-sample values with a percentile bootstrap CI (used when a run has only one seed)."""
    x = np.asarray(values, dtype=float)
    low, high = percentile_bounds(bootstrap_means(x, n_resamples, seed), confidence)
    return Interval(float(x.mean()), low, high, "bootstrap", int(x.size))


def _cluster_ratio(sums: np.ndarray, counts: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Resample clusters with replacement; return sum(sums) / sum(counts) per resample (the pooled mean)."""
    n = sums.size
    out = np.empty(n_resamples)
    chunk = max(1, _CHUNK_ELEMENTS // max(n, 1))
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = resample_index(n, stop - start, rng)
        out[start:stop] = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    return out


def paired_bootstrap(a: Mapping[tuple[int, str], float], b: Mapping[tuple[int, str], float],
                     n_resamples: int = 2000, seed: int | Sequence[int] = 0, confidence: float = 0.95,
                     pair_on_seed: bool = True) -> PairedDiff:
    """Paired bootstrap CI of mean(b) - mean(a).

    `a` and `b` map (seed, sample id) to a per-sample score. Only keys present in both are used
    (with `pair_on_seed=False`, each side is first averaged over its own seeds per id, which pairs two sweeps run
    with different seeds). Ids are the resampling unit; an id's seeds move with it.
    """
    if pair_on_seed:
        keys = sorted(set(a) & set(b))
        ids = sorted({k[1] for k in keys})
        pos = {i: j for j, i in enumerate(ids)}
        sum_a, sum_b, count = np.zeros(len(ids)), np.zeros(len(ids)), np.zeros(len(ids))
        for k in keys:
            j = pos[k[1]]
            sum_a[j] += a[k]
            sum_b[j] += b[k]
            count[j] += 1
    else:
        mean_a, mean_b = _per_id_mean(a), _per_id_mean(b)
        ids = sorted(set(mean_a) & set(mean_b))
        sum_a = np.array([mean_a[i] for i in ids], dtype=float)
        sum_b = np.array([mean_b[i] for i in ids], dtype=float)
        count = np.ones(len(ids))
    if not ids:
        raise ValueError("paired_bootstrap: the two score sets share no (seed, id) pairs; they were not run on the "
                         "same samples (check task limits and seeds)")
    rng = make_rng(seed)
    resampled = _cluster_ratio(sum_b - sum_a, count, n_resamples, rng)
    low, high = percentile_bounds(resampled, confidence)
    total = count.sum()
    return PairedDiff(diff=float((sum_b - sum_a).sum() / total), low=low, high=high,
                      mean_a=float(sum_a.sum() / total), mean_b=float(sum_b.sum() / total), n_ids=len(ids),
                      n_pairs=int(total), confidence=confidence, resampled=resampled)


def _per_id_mean(values: Mapping[tuple[int, str], float]) -> dict[str, float]:
    sums: dict[str, list[float]] = {}
    for (_, sid), v in values.items():
        sums.setdefault(sid, []).append(v)
    return {sid: float(np.mean(v)) for sid, v in sums.items()}


def average_paired(diffs: Sequence[PairedDiff]) -> PairedDiff:
    """The difference of benchmark averages: the mean of per-benchmark differences, with the CI of the mean of
    their (independent, per-benchmark) bootstrap distributions: a stratified bootstrap with benchmarks as strata."""
    if not diffs:
        raise ValueError("average_paired needs at least one PairedDiff")
    sizes = {d.resampled.size for d in diffs}
    if len(sizes) != 1:
        raise ValueError(f"average_paired: the differences have different resample counts {sorted(sizes)}")
    resampled = np.mean([d.resampled for d in diffs], axis=0)
    confidence = diffs[0].confidence
    low, high = percentile_bounds(resampled, confidence)
    return PairedDiff(diff=float(np.mean([d.diff for d in diffs])), low=low, high=high,
                      mean_a=float(np.mean([d.mean_a for d in diffs])),
                      mean_b=float(np.mean([d.mean_b for d in diffs])),
                      n_ids=sum(d.n_ids for d in diffs), n_pairs=sum(d.n_pairs for d in diffs),
                      confidence=confidence, resampled=resampled)


# --- Significance: training variance (seeds) and benchmark sampling (ids) together -------------------------------

def normal_two_sided_p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2))


def bootstrap_p(d: PairedDiff) -> float:
    """Two-sided p-value of a paired-bootstrap difference: a Wald test with the bootstrap standard error.

    A percentile p-value resolves no finer than 2 / n_resamples, too coarse for a Holm correction over a whole
    table; the bootstrap SE keeps the resampling's pairing and clustering and gives a continuous p."""
    se = float(np.std(d.resampled, ddof=1)) if d.resampled.size > 1 else 0.0
    if se == 0.0:
        return 1.0 if d.diff == 0 else 0.0
    return normal_two_sided_p(d.diff / se)


@dataclass(frozen=True)
class SeedTest:
    """A t-test over per-seed scores: paired on seeds within one sweep, Welch's unpaired test across two sweeps."""

    diff: float          # mean over seeds of b - a
    t: float
    df: float
    p: float
    n_a: int
    n_b: int
    kind: str            # "paired" | "welch" | "one-sample" (one side is a single run) | "none" (too few seeds)


def _t_test(diff: float, se: float, df: float) -> tuple[float, float]:
    if se == 0.0:
        return (math.inf if diff else 0.0), (0.0 if diff else 1.0)
    t = float(diff / se)
    return t, float(t_two_sided_p_real(t, float(df)))


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b), by its continued fraction (modified Lentz)."""
    if x <= 0.0 or x >= 1.0:
        return 0.0 if x <= 0.0 else 1.0
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _betainc(b, a, 1.0 - x)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)) / a
    tiny = 1e-300
    f, c, d = 1.0, 1.0, 0.0
    for i in range(400):
        m = i // 2
        if i == 0:
            num = 1.0
        elif i % 2 == 0:
            num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        else:
            num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + num / c
        c = c if abs(c) > tiny else tiny
        f *= c * d
        if abs(1.0 - c * d) < 1e-15:
            break
    return front * (f - 1.0)


def t_two_sided_p_real(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with a real df (Welch's): I_{df/(df+t^2)}(df/2, 1/2)."""
    if math.isinf(t):
        return 0.0
    return _betainc(df / 2, 0.5, df / (df + t * t))


def seed_paired_test(a: Mapping[int, float], b: Mapping[int, float]) -> SeedTest:
    """Paired t-test of b - a over the seeds both have (within one sweep, seed s of two methods shares the world and
    the trained artifacts it was built from). A side with one run (a seed-independent method) is held constant:
    the test is then a one-sample test of the other side's seeds."""
    if len(a) == 1 or len(b) == 1:
        const, many, sign = (a, b, 1.0) if len(a) == 1 else (b, a, -1.0)
        c = next(iter(const.values()))
        d = np.array([sign * (v - c) for v in many.values()])
        kind = "one-sample"
    else:
        seeds = sorted(set(a) & set(b))
        d = np.array([b[s] - a[s] for s in seeds])
        kind = "paired"
    if d.size < 2:
        return SeedTest(float(d.mean()) if d.size else math.nan, math.nan, 0, 1.0, len(a), len(b), "none")
    t, p = _t_test(float(d.mean()), float(d.std(ddof=1)) / math.sqrt(d.size), d.size - 1)
    return SeedTest(float(d.mean()), t, d.size - 1, p, len(a), len(b), kind)


def welch_test(a: Sequence[float], b: Sequence[float]) -> SeedTest:
    """Welch's t-test of mean(b) - mean(a) over per-seed scores of two independent sweeps (their seed numbers may
    coincide, but the trained models are independent draws). A one-run side is held constant."""
    xa, xb = np.asarray(a, float), np.asarray(b, float)
    diff = float(xb.mean() - xa.mean())
    va = xa.var(ddof=1) / xa.size if xa.size > 1 else 0.0
    vb = xb.var(ddof=1) / xb.size if xb.size > 1 else 0.0
    if xa.size < 2 and xb.size < 2:
        return SeedTest(diff, math.nan, 0, 1.0, xa.size, xb.size, "none")
    se = math.sqrt(va + vb)
    if xa.size < 2 or xb.size < 2:
        df: float = (xb.size if xa.size < 2 else xa.size) - 1
        kind = "one-sample"
    else:
        denom = (va ** 2 / (xa.size - 1) if va else 0.0) + (vb ** 2 / (xb.size - 1) if vb else 0.0)
        df = (va + vb) ** 2 / denom if denom else float(xa.size + xb.size - 2)
        kind = "welch"
    t, p = _t_test(diff, se, df)
    return SeedTest(diff, t, float(df), p, int(xa.size), int(xb.size), kind)


@dataclass(frozen=True)
class Significance:
    """Is b different from a? Both sources of variance must agree (an intersection-union test, level alpha):

    - training: a t-test over seeds (`seeds`), which sees how much retraining moves the score;
    - benchmark sampling: the paired bootstrap over sample ids (`ids`), which sees which samples were drawn.

    p = max(p_seeds, p_ids); with fewer than two runs on both sides only the id test is possible. `p_adjusted` is
    set by `holm` across a family of comparisons; `significant` uses it when set."""

    ids: PairedDiff
    seeds: SeedTest | None
    p_ids: float
    p: float
    alpha: float
    p_adjusted: float | None = None

    @property
    def significant(self) -> bool:
        return (self.p if self.p_adjusted is None else self.p_adjusted) < self.alpha

    @property
    def seed_level(self) -> bool:
        """The test saw training variance (a t-test over seeds entered p)."""
        return self.seeds is not None and self.seeds.kind != "none"


def significance(ids: PairedDiff, seeds: SeedTest | None, alpha: float = 0.05) -> Significance:
    p_ids = bootstrap_p(ids)
    p = max(p_ids, seeds.p) if seeds is not None and seeds.kind != "none" else p_ids
    return Significance(ids, seeds, float(p_ids), float(p), alpha)


def holm(pvalues: Mapping[Any, float]) -> dict[Any, float]:
    """Holm's step-down adjusted p-values (family-wise error control for any dependence between the tests)."""
    order = sorted(pvalues, key=lambda k: pvalues[k])
    m = len(order)
    adjusted: dict[Any, float] = {}
    running = 0.0
    for i, key in enumerate(order):
        running = max(running, min(1.0, (m - i) * float(pvalues[key])))
        adjusted[key] = running
    return adjusted
