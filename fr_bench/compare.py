"""Does sweep B beat sweep A? A paired bootstrap per benchmark: the regression test for a new routing idea.

    python -m fr_bench.compare reports/A reports/B [--method M] [--reference-method R]
    python -m fr_bench.compare reports/A reports/B --all-methods

Compares method M of sweep B (default: B's reference method) with method R of sweep A (default: M when A has it,
else A's reference method), on every benchmark both ran. `--all-methods` compares every method both sweeps ran with
itself, the check that a second machine or environment reproduces a whole table (the same code should give no
significant difference anywhere). The test is the report's (docs/reports.md): a difference
counts only when it holds against both sources of variance, training (Welch's t-test over the two sweeps' per-seed
scores: two sweeps are independent trainings even when their seed numbers coincide) and benchmark sampling (the
paired bootstrap over the sample ids present in both, paired on seeds too when the sweeps share them), Holm-corrected
over the rows compared. Prints a table and, as the last line, one JSON object. Exit code 0 whatever the verdict; 2
when an input is unusable.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import zlib
from dataclasses import dataclass, field
from typing import Any

from .reports.schema import Sweep, SweepFormatError, load_sweep
from .reports.stats import PairedDiff, Significance, average_paired, holm, paired_bootstrap, significance, welch_test
from .reports.tables import benchmark_label

AVG_ROW = "Avg"


@dataclass
class Comparison:
    a: Sweep
    b: Sweep
    method_a: str
    method_b: str
    confidence: float
    n_resamples: int
    diffs: dict[str, Significance]                # benchmark -> test of B - A
    avg: Significance | None                      # over the compared non-general benchmarks
    skipped: dict[str, str] = field(default_factory=dict)  # benchmark -> why it was not compared

    @property
    def b_beats_a(self) -> bool:
        """B's Avg is significantly above A's."""
        return self.avg is not None and self.avg.significant and self.avg.ids.diff > 0


def verdict(t: Significance) -> str:
    if not t.significant:
        return "no significant difference"
    return "B better" if t.ids.diff > 0 else "B worse"


def _per_seed(sweep: Sweep, method: str, tasks: list[str]) -> list[float]:
    """Per-seed mean primary score over `tasks` (one value per independent run)."""
    runs = [{r.seed: r.primary for r in sweep.runs(method, t)} for t in tasks]
    seeds = [s for s in runs[0] if all(s in r for r in runs)]
    return [sum(r[s] for r in runs) / len(runs) for s in seeds]


def pick_methods(a: Sweep, b: Sweep, method: str | None, reference_method: str | None) -> tuple[str, str]:
    """(method in A, method in B) following the defaults in the module docstring; errors name the choices."""
    a_methods, b_methods = {r.method for r in a.results}, {r.method for r in b.results}
    method_b = method or b.reference
    if reference_method:
        method_a = reference_method
    elif method and method in a_methods:
        method_a = method
    else:
        method_a = a.reference
    for name, sweep, methods, flag in ((method_a, a, a_methods, "--reference-method"),
                                       (method_b, b, b_methods, "--method")):
        if name not in methods:
            raise SweepFormatError(f"method '{name}' has no results in {sweep.root}; pass {flag} with one of "
                                   f"{sorted(methods)}.")
    return method_a, method_b


def compare_sweeps(a: Sweep, b: Sweep, method_a: str, method_b: str, confidence: float = 0.95,
                   n_resamples: int = 2000, seed: int = 0) -> Comparison:
    a_tasks = {t for t in a.task_domains() if a.rows(method_a, t)}
    b_domains = b.task_domains()
    diffs: dict[str, PairedDiff] = {}
    skipped: dict[str, str] = {}
    for task in b.task_order():
        if not b.rows(method_b, task):
            continue
        if task not in a_tasks:
            skipped[task] = f"not run by {method_a} in A"
            continue
        if a.primary_metric(task) != b.primary_metric(task):
            skipped[task] = f"primary metric differs ({a.primary_metric(task)} vs {b.primary_metric(task)})"
            continue
        va, vb = a.run_values(method_a, task), b.run_values(method_b, task)
        if va is None or vb is None:
            skipped[task] = "per-sample files missing in " + ("A" if va is None else "B")
            continue
        if not {k[1] for k in va} & {k[1] for k in vb}:
            skipped[task] = "no sample id in common"
            continue
        diffs[task] = paired_bootstrap(va, vb, n_resamples, [seed, zlib.crc32(task.encode())], confidence,
                                       pair_on_seed=bool(set(va) & set(vb)))
    for task in a_tasks - set(diffs) - set(skipped):
        skipped[task] = f"not run by {method_b} in B"
    alpha = 1 - confidence
    tests = {t: significance(d, welch_test(_per_seed(a, method_a, [t]), _per_seed(b, method_b, [t])), alpha)
             for t, d in diffs.items()}
    averaged = [t for t in diffs if b_domains[t] != "general"]
    avg = None
    if averaged:
        avg = significance(average_paired([diffs[t] for t in averaged]),
                           welch_test(_per_seed(a, method_a, averaged), _per_seed(b, method_b, averaged)), alpha)
    family = {**{t: x.p for t, x in tests.items()}, **({AVG_ROW: avg.p} if avg else {})}
    adjusted = holm(family)
    tests = {t: dataclasses.replace(x, p_adjusted=adjusted[t]) for t, x in tests.items()}
    avg = dataclasses.replace(avg, p_adjusted=adjusted[AVG_ROW]) if avg else None
    return Comparison(a, b, method_a, method_b, confidence, n_resamples, tests, avg, skipped)


@dataclass
class AllMethods:
    """Every method both sweeps ran, against itself (`comparisons`), and each method's Avg test with its p
    Holm-corrected across the methods (`avgs`: the family is the table's Avg column, where one flagged method among
    many is what chance gives)."""

    comparisons: dict[str, Comparison]
    avgs: dict[str, Significance]

    @property
    def significant(self) -> list[str]:
        return [m for m, t in self.avgs.items() if t.significant]

    @property
    def largest(self) -> tuple[float, str]:
        """The largest |B - A| of any (method, benchmark) cell, in points, and where it is."""
        cells = [(abs(100 * t.ids.diff), f"{m}/{task}") for m, c in self.comparisons.items()
                 for task, t in c.diffs.items()]
        return max(cells) if cells else (0.0, "")


def compare_all(a: Sweep, b: Sweep, confidence: float = 0.95, n_resamples: int = 2000,
                seed: int = 0) -> AllMethods:
    common = sorted({r.method for r in a.results} & {r.method for r in b.results})
    if not common:
        raise SweepFormatError(f"{a.root} and {b.root} have no method in common; --all-methods compares methods "
                               "by name.")
    comparisons = {m: compare_sweeps(a, b, m, m, confidence, n_resamples, seed) for m in common}
    adjusted = holm({m: c.avg.p for m, c in comparisons.items() if c.avg})
    return AllMethods(comparisons, {m: dataclasses.replace(comparisons[m].avg, p_adjusted=p)
                                    for m, p in adjusted.items()})


def _row(t: Significance) -> dict[str, Any]:
    d = t.ids
    seeds = t.seeds if t.seed_level else None
    return {"mean_a": d.mean_a, "mean_b": d.mean_b, "diff": d.diff, "ci_low": d.low, "ci_high": d.high,
            "n_ids": d.n_ids, "n_pairs": d.n_pairs, "p_ids": t.p_ids, "p_seeds": seeds.p if seeds else None,
            "seed_test": seeds.kind if seeds else None, "p": t.p, "p_holm": t.p_adjusted,
            "significant": t.significant, "verdict": verdict(t)}


def to_json(c: Comparison) -> dict[str, Any]:
    return {"a": str(c.a.root), "b": str(c.b.root), "method_a": c.method_a, "method_b": c.method_b,
            "confidence": c.confidence, "n_resamples": c.n_resamples,
            "benchmarks": {t: _row(d) for t, d in c.diffs.items()}, "avg": _row(c.avg) if c.avg else None,
            "skipped": c.skipped, "b_beats_a": c.b_beats_a}


def format_table(c: Comparison) -> str:
    ci = f"{int(100 * c.confidence)}% CI"
    lines = [f"A: {c.a.root} [{c.method_a}]    B: {c.b.root} [{c.method_b}]    (scores x100; CI: paired bootstrap, "
             f"{c.n_resamples} resamples; p: max of Welch over seeds and the id bootstrap, Holm-corrected)",
             f"{'benchmark':<16}{'A':>7}{'B':>7}{'B-A':>8}  {ci:<17}{'n':>6}{'p_holm':>9}  verdict"]
    rows = list(c.diffs.items()) + ([(AVG_ROW, c.avg)] if c.avg else [])
    for name, t in rows:
        d = t.ids
        label = name if name == AVG_ROW else benchmark_label(name)
        interval = f"[{100 * d.low:+.1f}, {100 * d.high:+.1f}]"
        lines.append(f"{label:<16}{100 * d.mean_a:>7.1f}{100 * d.mean_b:>7.1f}{100 * d.diff:>+8.1f}  "
                     f"{interval:<17}{d.n_ids:>6}{t.p_adjusted:>9.3f}  {verdict(t)}")
    for task, why in c.skipped.items():
        lines.append(f"{benchmark_label(task):<16}skipped: {why}")
    lines.append(f"B beats A on Avg: {'yes' if c.b_beats_a else 'no'}")
    return "\n".join(lines)


def all_methods_json(r: AllMethods) -> dict[str, Any]:
    first = next(iter(r.comparisons.values()))
    largest, where = r.largest
    return {"a": str(first.a.root), "b": str(first.b.root), "confidence": first.confidence,
            "methods": {m: {**to_json(c), "avg_across_methods": _row(r.avgs[m]) if m in r.avgs else None}
                        for m, c in r.comparisons.items()},
            "significant_methods": r.significant, "max_abs_diff_points": round(largest, 1), "max_abs_diff_at": where}


def format_all_methods(r: AllMethods) -> str:
    first = next(iter(r.comparisons.values()))
    lines = [f"A: {first.a.root}    B: {first.b.root}    (each method against itself; Avg x100 over the compared "
             "non-general benchmarks; p: the Avg test, Holm-corrected across the methods)",
             f"{'method':<28}{'A':>7}{'B':>7}{'B-A':>8}  {f'{int(100 * first.confidence)}% CI':<17}{'p_holm':>9}"
             "  verdict"]
    for m in r.comparisons:
        if m not in r.avgs:
            lines.append(f"{m:<28}no non-general benchmark in common")
            continue
        t = r.avgs[m]
        d = t.ids
        lines.append(f"{m:<28}{100 * d.mean_a:>7.1f}{100 * d.mean_b:>7.1f}{100 * d.diff:>+8.1f}  "
                     f"{f'[{100 * d.low:+.1f}, {100 * d.high:+.1f}]':<17}{t.p_adjusted:>9.3f}  {verdict(t)}")
    largest, where = r.largest
    flagged = r.significant
    lines.append(f"largest |B-A| of one benchmark: {largest:.1f} points ({where}); methods whose Avg differs "
                 f"significantly: {len(flagged)} of {len(r.avgs)}" + (f" ({', '.join(flagged)})" if flagged else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fr_bench.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_a", help="baseline sweep directory (reports/A)")
    parser.add_argument("sweep_b", help="candidate sweep directory (reports/B)")
    parser.add_argument("--method", help="method of B to test (default: B's reference method)")
    parser.add_argument("--reference-method", help="method of A to test against (default: --method if A has it, "
                                                   "else A's reference method)")
    parser.add_argument("--all-methods", action="store_true",
                        help="compare every method both sweeps ran with itself (does B reproduce A's table?)")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.all_methods and (args.method or args.reference_method):
        parser.error("--all-methods compares every method with itself; drop --method / --reference-method")
    try:
        a, b = load_sweep(args.sweep_a), load_sweep(args.sweep_b)
        if args.all_methods:
            result = compare_all(a, b, args.confidence, args.resamples, args.seed)
            print(format_all_methods(result))
            print(json.dumps(all_methods_json(result), sort_keys=True))
            return 0
        method_a, method_b = pick_methods(a, b, args.method, args.reference_method)
        comparison = compare_sweeps(a, b, method_a, method_b, args.confidence, args.resamples, args.seed)
    except SweepFormatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(comparison))
    print(json.dumps(to_json(comparison), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
