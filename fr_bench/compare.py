"""Does sweep B beat sweep A? A paired bootstrap per benchmark: the regression test for a new routing idea.

    python -m fr_bench.compare reports/A reports/B [--method M] [--reference-method R]

Compares method M of sweep B (default: B's reference method) with method R of sweep A (default: M when A has it,
else A's reference method), on every benchmark both ran, paired on the sample ids present in both (and on seeds,
when the sweeps share seeds; otherwise each side is averaged over its own seeds per id). Prints a table and, as
the last line, one JSON object. Exit code 0 whatever the verdict; 2 when an input is unusable.
"""
from __future__ import annotations

import argparse
import json
import sys
import zlib
from dataclasses import dataclass, field
from typing import Any

from .reports.schema import Sweep, SweepFormatError, load_sweep
from .reports.stats import PairedDiff, average_paired, paired_bootstrap
from .reports.tables import benchmark_label


@dataclass
class Comparison:
    a: Sweep
    b: Sweep
    method_a: str
    method_b: str
    confidence: float
    n_resamples: int
    diffs: dict[str, PairedDiff]                  # benchmark -> B - A
    avg: PairedDiff | None                        # over the compared non-general benchmarks
    skipped: dict[str, str] = field(default_factory=dict)  # benchmark -> why it was not compared

    @property
    def b_beats_a(self) -> bool:
        """B's Avg is significantly above A's (the CI of the Avg difference lies above 0)."""
        return self.avg is not None and self.avg.low > 0


def verdict(d: PairedDiff) -> str:
    if d.low > 0:
        return "B better"
    if d.high < 0:
        return "B worse"
    return "no significant difference"


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
        va, vb = a.sample_values(method_a, task), b.sample_values(method_b, task)
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
    averaged = [diffs[t] for t in diffs if b_domains[t] != "general"]
    avg = average_paired(averaged) if averaged else None
    return Comparison(a, b, method_a, method_b, confidence, n_resamples, diffs, avg, skipped)


def _row(d: PairedDiff) -> dict[str, Any]:
    return {"mean_a": d.mean_a, "mean_b": d.mean_b, "diff": d.diff, "ci_low": d.low, "ci_high": d.high,
            "n_ids": d.n_ids, "n_pairs": d.n_pairs, "significant": d.significant, "verdict": verdict(d)}


def to_json(c: Comparison) -> dict[str, Any]:
    return {"a": str(c.a.root), "b": str(c.b.root), "method_a": c.method_a, "method_b": c.method_b,
            "confidence": c.confidence, "n_resamples": c.n_resamples,
            "benchmarks": {t: _row(d) for t, d in c.diffs.items()}, "avg": _row(c.avg) if c.avg else None,
            "skipped": c.skipped, "b_beats_a": c.b_beats_a}


def format_table(c: Comparison) -> str:
    ci = f"{int(100 * c.confidence)}% CI"
    lines = [f"A: {c.a.root} [{c.method_a}]    B: {c.b.root} [{c.method_b}]    (scores x100, paired bootstrap, "
             f"{c.n_resamples} resamples)",
             f"{'benchmark':<16}{'A':>7}{'B':>7}{'B-A':>8}  {ci:<17}{'n':>6}  verdict"]
    rows = list(c.diffs.items()) + ([("Avg", c.avg)] if c.avg else [])
    for name, d in rows:
        label = name if name == "Avg" else benchmark_label(name)
        interval = f"[{100 * d.low:+.1f}, {100 * d.high:+.1f}]"
        lines.append(f"{label:<16}{100 * d.mean_a:>7.1f}{100 * d.mean_b:>7.1f}{100 * d.diff:>+8.1f}  "
                     f"{interval:<17}{d.n_ids:>6}  {verdict(d)}")
    for task, why in c.skipped.items():
        lines.append(f"{benchmark_label(task):<16}skipped: {why}")
    lines.append(f"B beats A on Avg: {'yes' if c.b_beats_a else 'no'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fr_bench.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_a", help="baseline sweep directory (reports/A)")
    parser.add_argument("sweep_b", help="candidate sweep directory (reports/B)")
    parser.add_argument("--method", help="method of B to test (default: B's reference method)")
    parser.add_argument("--reference-method", help="method of A to test against (default: --method if A has it, "
                                                   "else A's reference method)")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        a, b = load_sweep(args.sweep_a), load_sweep(args.sweep_b)
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
