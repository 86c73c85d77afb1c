"""Everything a report shows, computed once from a loaded sweep: scores with CIs, differences to the reference
method, secondary metrics, expert-selection shares and decode cost. Tables and plots only format this.
"""
from __future__ import annotations

import dataclasses
import math
import zlib
from dataclasses import dataclass, field

import numpy as np

from .schema import Sweep, sample_value
from .stats import (Interval, PairedDiff, Significance, average_paired, bootstrap_means, holm, paired_bootstrap,
                    percentile_bounds, seed_paired_test, significance, t_interval)

# Keys the scorers' aggregates carry that count samples, not score them (`fr_bench.scoring.metrics`: `n`, and
# `samples` for pass@k); the result row's own `n` reports the count. Metric tables list scores only.
COUNT_KEYS = frozenset({"n", "samples"})

AVG = "Avg"


@dataclass(frozen=True)
class Score:
    """One table cell: the method's score (mean over its runs) with its CI, its paired difference to the reference
    method and the test of that difference (None for the reference itself or when samples are missing).
    `one_run`: the method does not depend on the seed, so the cell is one run with a bootstrap CI over ids."""

    interval: Interval
    vs_reference: PairedDiff | None = None
    test: Significance | None = None
    one_run: bool = False

    @property
    def significant(self) -> bool:
        return self.test is not None and self.test.significant


@dataclass
class RoutingShare:
    """Generated tokens of one routed method on one task, counted per expert (pooled over seeds and samples)."""

    counts: np.ndarray  # [n_experts]

    @property
    def shares(self) -> np.ndarray:
        total = self.counts.sum()
        return self.counts / total if total else np.zeros_like(self.counts, dtype=float)


@dataclass
class SweepSummary:
    sweep: Sweep
    methods: list[str]
    groups: dict[str, str | None]
    tasks: list[str]                       # table columns, domain order
    domains: dict[str, str]
    avg_tasks: list[str]                   # benchmarks averaged into Avg (all non-general ones)
    confidence: float
    n_resamples: int
    scores: dict[tuple[str, str], Score]   # (method, task or AVG) -> cell
    n_comparisons: int                     # the Holm family: every tested cell of the main table
    metric_names: dict[str, list[str]]     # task -> metrics, primary first
    metric_scores: dict[tuple[str, str, str], Interval]  # (method, task, metric)
    routing: dict[tuple[str, str], RoutingShare] = field(default_factory=dict)
    cost_per_sample: dict[str, float] = field(default_factory=dict)   # method -> mean decode tokens per sample
    wall_s: dict[str, float] = field(default_factory=dict)            # method -> summed wall time

    @property
    def reference(self) -> str:
        return self.sweep.reference

    @property
    def expert_names(self) -> list[str]:
        return list(self.sweep.meta.expert_names)

    @property
    def n_seeds(self) -> int:
        return len({r.seed for r in self.sweep.results})

    def columns(self) -> list[str]:
        """Benchmarks of the main table: the averaged ones, Avg, then general-quality ones."""
        general = [t for t in self.tasks if t not in self.avg_tasks]
        return self.avg_tasks + ([AVG] if self.avg_tasks else []) + general

    def relative_cost(self) -> dict[str, float]:
        """Decode cost relative to the mean single expert (1.0 = one expert decoding alone); empty if no experts."""
        experts = [m for m in self.methods if self.groups.get(m) == "expert" and m in self.cost_per_sample]
        base = float(np.mean([self.cost_per_sample[m] for m in experts])) if experts else 0.0
        if base <= 0:
            return {}
        return {m: c / base for m, c in self.cost_per_sample.items()}


def _rng_seed(seed: int, *names: str) -> list[int]:
    """A per-(method, task) bootstrap seed, so every cell is reproducible and cells are independent."""
    return [seed] + [zlib.crc32(n.encode()) for n in names]


def _seed_interval(values: list[float], confidence: float) -> Interval:
    if len(values) >= 2:
        return t_interval(values, confidence)
    return Interval(values[0], math.nan, math.nan, "none", len(values))


def summarize(sweep: Sweep, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> SweepSummary:
    """Compute every number the report shows.

    Cell CI: t-interval over seeds when a cell has >= 2 runs, else a percentile bootstrap over the samples of its
    one run (a single seed, or a method that does not depend on the seed). Avg: per-seed average over the
    non-general benchmarks, then the same rule (one run: the mean of independent per-benchmark bootstrap means).
    Differences to the reference: the paired bootstrap over sample ids (stats.paired_bootstrap; Avg: stratified by
    benchmark) for the CI, and `stats.significance` for the † test: a seed-level t-test and the id bootstrap must
    both reject, Holm-corrected across every tested cell of the main table.
    """
    methods, tasks, domains = sweep.method_order(), sweep.task_order(), sweep.task_domains()
    avg_tasks = [t for t in tasks if domains[t] != "general"]
    ref = sweep.reference
    alpha = 1 - confidence
    scores: dict[tuple[str, str], Score] = {}
    boot_means: dict[tuple[str, str], np.ndarray] = {}
    diffs: dict[tuple[str, str], PairedDiff] = {}
    per_seed: dict[tuple[str, str], dict[int, float]] = {}   # (method, task) -> {seed: primary} over its runs

    for task in tasks:
        ref_values = sweep.run_values(ref, task) if sweep.rows(ref, task) else None
        for method in methods:
            runs = sweep.runs(method, task)
            if not runs:
                continue
            one_run = len(runs) < len(sweep.rows(method, task))
            per_seed[(method, task)] = {r.seed: r.primary for r in runs}
            values = sweep.run_values(method, task)
            interval = _seed_interval([r.primary for r in runs], confidence)
            if len(runs) == 1 and values:
                dist = bootstrap_means(list(values.values()), n_resamples, _rng_seed(seed, method, task))
                boot_means[(method, task)] = dist
                low, high = percentile_bounds(dist, confidence)
                interval = Interval(runs[0].primary, low, high, "bootstrap", len(values))
            diff = test = None
            if method != ref and values and ref_values:
                paired = bool(set(values) & set(ref_values)) and len(runs) > 1
                diff = paired_bootstrap(ref_values, values, n_resamples, _rng_seed(seed, method, task, "paired"),
                                        confidence, pair_on_seed=paired)
                diffs[(method, task)] = diff
                test = significance(diff, seed_paired_test(per_seed[(ref, task)], per_seed[(method, task)]), alpha)
            scores[(method, task)] = Score(interval, diff, test, one_run)

    for method in methods:
        if not avg_tasks or any((method, t) not in scores for t in avg_tasks):
            continue
        seeds_of = [per_seed[(method, t)] for t in avg_tasks]
        complete = {s: float(np.mean([d[s] for d in seeds_of])) for s in seeds_of[0] if all(s in d for d in seeds_of)}
        mean = float(np.mean([scores[(method, t)].interval.mean for t in avg_tasks]))
        one_run = all(scores[(method, t)].one_run for t in avg_tasks)
        if len(complete) >= 2:
            interval = t_interval(list(complete.values()), confidence)
            interval = Interval(mean, mean - interval.half_width, mean + interval.half_width, "t", interval.n)
        elif all((method, t) in boot_means for t in avg_tasks):
            low, high = percentile_bounds(np.mean([boot_means[(method, t)] for t in avg_tasks], axis=0), confidence)
            interval = Interval(mean, low, high, "bootstrap", sum(scores[(method, t)].interval.n for t in avg_tasks))
        else:
            interval = Interval(mean, math.nan, math.nan, "none", len(complete))
        per_seed[(method, AVG)] = complete
        task_diffs = [diffs.get((method, t)) for t in avg_tasks]
        avg_diff = test = None
        if all(d is not None for d in task_diffs):
            avg_diff = average_paired(task_diffs)  # type: ignore[arg-type]
            test = significance(avg_diff, seed_paired_test(per_seed.get((ref, AVG), {}), complete), alpha)
        scores[(method, AVG)] = Score(interval, avg_diff, test, one_run)

    family = {k: sc.test.p for k, sc in scores.items() if sc.test is not None}
    for k, p_adj in holm(family).items():
        sc = scores[k]
        scores[k] = dataclasses.replace(sc, test=dataclasses.replace(sc.test, p_adjusted=p_adj))

    metric_names: dict[str, list[str]] = {}
    metric_scores: dict[tuple[str, str, str], Interval] = {}
    for task in tasks:
        primary = sweep.primary_metric(task)
        names = [primary] + sorted({k for r in sweep.results if r.task == task for k in r.metrics}
                                   - {primary} - COUNT_KEYS)
        metric_names[task] = names
        for method in methods:
            rows = sweep.runs(method, task)
            for metric in names:
                vals = [r.metrics.get(metric, r.primary if metric == primary else math.nan) for r in rows]
                if not rows or any(math.isnan(v) for v in vals):
                    continue
                interval = _seed_interval(vals, confidence)
                if len(rows) == 1:
                    samples = sweep.samples(method, task, rows[0].seed)
                    if samples and all(metric in (s.get("metrics") or {}) or metric == primary for s in samples):
                        dist = bootstrap_means([sample_value(s, metric) for s in samples], n_resamples,
                                               _rng_seed(seed, method, task, metric))
                        low, high = percentile_bounds(dist, confidence)
                        interval = Interval(vals[0], low, high, "bootstrap", len(samples))
                metric_scores[(method, task, metric)] = interval

    summary = SweepSummary(sweep=sweep, methods=methods, groups=sweep.method_groups(), tasks=tasks, domains=domains,
                           avg_tasks=avg_tasks, confidence=confidence, n_resamples=n_resamples, scores=scores,
                           n_comparisons=len(family), metric_names=metric_names, metric_scores=metric_scores)
    summary.routing = routing_shares(sweep, methods, tasks)
    for method in methods:
        rows = [r for r in sweep.results if r.method == method]
        n = sum(r.n for r in rows)
        summary.cost_per_sample[method] = sum(r.cost_tokens for r in rows) / n if n else math.nan
        summary.wall_s[method] = sum(r.wall_s for r in rows)
    return summary


def routing_shares(sweep: Sweep, methods: list[str], tasks: list[str]) -> dict[tuple[str, str], RoutingShare]:
    """Per routed method and task, generated tokens per expert (from the samples' `expert_choices`)."""
    n_experts = len(sweep.meta.expert_names)
    out: dict[tuple[str, str], RoutingShare] = {}
    for method in methods:
        for task in tasks:
            counts = np.zeros(n_experts, dtype=np.int64)
            routed = False
            for r in sweep.rows(method, task):
                for s in sweep.samples(method, task, r.seed) or []:
                    choices = s.get("expert_choices")
                    if choices is None:
                        continue
                    routed = True
                    c = np.asarray(choices, dtype=np.int64)
                    if c.size and (c.min() < 0 or c.max() >= n_experts):
                        raise ValueError(f"samples of {method}/{task}/seed{r.seed}, id {s.get('id')}: expert index "
                                         f"outside 0..{n_experts - 1}; meta.json expert_names has {n_experts} names")
                    counts += np.bincount(c, minlength=n_experts)
            if routed:
                out[(method, task)] = RoutingShare(counts)
    return out
