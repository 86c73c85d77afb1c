"""Does the micro world's specialisation table hold on another machine? Two builds under two CPU kernel sets.

Every x86-64 machine has both kernel sets, so they stand in for two machines: PyTorch's AVX2 kernels with MKL's AVX2
code path (`ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2`) and the generic kernels with MKL's compatible path
(`ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE`). They round the last bits differently, so the two builds train
different weights from the same config and seeds; a world whose training converges gives the same table anyway.
Each build runs `python -m fr_bench.micro build CONFIG --json` in a subprocess with its kernel set and its own
cache (`$FR_BENCH_CACHE/world_stability/<set>`, so a rerun is warm), and reports the validation table.

With `--seeds` (default: the sweep's world seeds, 0 1 2) each kernel set builds one world per seed (the sweep's
`world.seeded` worlds: training seeds offset, same data), and the compared table is the seed mean, the number the
report prints. Each difference is also set against the report's interval: the 95 % t-interval half-width of the
first kernel set's seed mean (`inside_intervals`: how many differences lie within it).

Prints the per-model, per-domain differences (points, second set minus first); last line one JSON object with
`max_abs_diff_points` and `diffs` ({model: {domain: points}}) of the seed means, `per_seed_max_abs_diff_points`,
`ci_halfwidth_points`, `inside_intervals`, plus every table. Goal: every |diff| <= 3 and inside the interval. Run:
  .venv/bin/python benchmarks/world_stability.py --workers 2                  # experiments/micro.yaml, seeds 0 1 2
  .venv/bin/python benchmarks/world_stability.py --config experiments/micro_tiny.yaml --seeds 0

`--sweep YAML` asks the same of the test table: it runs the whole sweep under each kernel set (its own worlds, in
the same per-set cache, so a validation run before makes the worlds warm; the reports go to
`$FR_BENCH_CACHE/world_stability/<set>/reports/<name>`) and compares the two reports with
`python -m fr_bench.compare --all-methods`, the check a user runs against the committed table. Last line one JSON
object: `significant_methods` (whose Avg differs, Holm across methods), `max_abs_diff_points` / `max_abs_diff_at`
(the largest move of one method on one benchmark), `avg_diff_points` ({method: B - A}), `reports`, `sweep_s`.
  .venv/bin/python benchmarks/world_stability.py --sweep experiments/ablations.yaml   # 13.5 + 23 min on 2 cores, from an empty cache
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KERNEL_SETS = {"avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"},
               "default": {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}}


def build(config: str, overrides: list[str], seeds: list[int], workers: int, cache: Path,
          kernels: dict[str, str]) -> tuple[dict, float]:
    env = {**os.environ, **kernels, "FR_BENCH_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "fr_bench.micro", "build", config, *overrides, "base.progress_bar=false",
           "expert.progress_bar=false", "--json", "--workers", str(workers), "--seeds", *map(str, seeds)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"build with {kernels} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), time.perf_counter() - start


def run_sweep(config: str, cache: Path, kernels: dict[str, str]) -> tuple[Path, float]:
    """The whole sweep `config` under one kernel set, in that set's cache; returns its report folder and seconds."""
    from fr_bench.config import load_config
    from fr_bench.sweep.config import SweepConfig

    out = cache / "reports" / load_config(SweepConfig, config).name
    env = {**os.environ, **kernels, "FR_BENCH_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "fr_bench.sweep", config, "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"sweep with {kernels} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return out, time.perf_counter() - start


def compare_sweeps_across_kernels(config: str, root: Path) -> None:
    """Run `config` under both kernel sets, print compare --all-methods of the two reports and the summary JSON."""
    from fr_bench.compare import compare_all, format_all_methods
    from fr_bench.reports.schema import load_sweep

    reports, seconds = {}, {}
    for name, kernels in KERNEL_SETS.items():
        reports[name], seconds[name] = run_sweep(config, root / name, kernels)
    first, second = (load_sweep(reports[n]) for n in KERNEL_SETS)
    result = compare_all(first, second)
    print(f"test table, {' minus '.join(reversed(list(KERNEL_SETS)))}")
    print(format_all_methods(result))
    largest, where = result.largest
    print(json.dumps({"significant_methods": result.significant, "max_abs_diff_points": round(largest, 1),
                      "max_abs_diff_at": where,
                      "avg_diff_points": {m: round(100 * t.ids.diff, 1) for m, t in result.avgs.items()},
                      "reports": {n: str(r) for n, r in reports.items()},
                      "sweep_s": {n: round(v, 1) for n, v in seconds.items()}, "kernel_sets": KERNEL_SETS,
                      "sweep": config}))


def halfwidths(per_seed: dict[str, dict]) -> dict[str, dict[str, float | None]]:
    """95 % t-interval half-width (points) of each seed mean; None with one seed."""
    from fr_bench.reports.stats import t_interval

    tables = list(per_seed.values())
    if len(tables) < 2:
        return {m: {d: None for d in row} for m, row in tables[0].items()}
    return {m: {d: round(100 * (t_interval([t[m][d] for t in tables]).high - sum(t[m][d] for t in tables)
                                / len(tables)), 1) for d in row} for m, row in tables[0].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/micro.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="world seeds (the sweep's)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes of each build")
    parser.add_argument("--sweep", metavar="YAML", help="compare whole sweeps' test tables instead (see above; --config, "
                        "--seeds and --workers then do not apply: the sweep YAML says them)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides passed to both builds")
    args = parser.parse_args()
    root = Path(os.environ.get("FR_BENCH_CACHE", Path.home() / ".cache" / "fr_bench")) / "world_stability"
    if args.sweep:
        if args.overrides:
            parser.error("--sweep runs the sweep YAML as it is (its world config included); put the settings in "
                         "the YAML instead of overrides")
        compare_sweeps_across_kernels(args.sweep, root)
        return
    outs, seconds = {}, {}
    for name, kernels in KERNEL_SETS.items():
        outs[name], seconds[name] = build(args.config, args.overrides, args.seeds, args.workers, root / name, kernels)
    first, second = (outs[n]["accuracy"] for n in KERNEL_SETS)
    diffs = {m: {d: round(100 * (second[m][d] - first[m][d]), 1) for d in first[m]} for m in first}
    per_seed = [abs(100 * (outs["default"]["per_seed"][s][m][d] - outs["avx2"]["per_seed"][s][m][d]))
                for s in outs["avx2"]["per_seed"] for m in first for d in first[m]]
    half = halfwidths(outs[next(iter(KERNEL_SETS))]["per_seed"])
    inside = [abs(diffs[m][d]) <= half[m][d] for m in diffs for d in diffs[m] if half[m][d] is not None]
    domains = list(next(iter(diffs.values())))
    print(f"validation accuracy, mean over seeds {args.seeds}, {' minus '.join(reversed(list(KERNEL_SETS)))} "
          "(points; in brackets the 95 % half-width of the first set's seed mean)")
    print(f"{'model':<13}" + "".join(f"{d:>16}" for d in domains))
    for m, row in diffs.items():
        print(f"{m:<13}" + "".join(f"{row[d]:>+9.1f} [{half[m][d] if half[m][d] is not None else '-':>4}]"
                                   for d in domains))
    worst = max(abs(v) for row in diffs.values() for v in row.values())
    print(json.dumps({"max_abs_diff_points": worst, "diffs": diffs,
                      "per_seed_max_abs_diff_points": round(max(per_seed), 1), "ci_halfwidth_points": half,
                      "inside_intervals": f"{sum(inside)}/{len(inside)}" if inside else None,
                      "tables": {n: o["accuracy"] for n, o in outs.items()},
                      "per_seed": {n: o["per_seed"] for n, o in outs.items()},
                      "build_s": {k: round(v, 1) for k, v in seconds.items()}, "kernel_sets": KERNEL_SETS,
                      "seeds": args.seeds, "config": args.config, "overrides": args.overrides}))


if __name__ == "__main__":
    main()
