"""Does the micro world's specialisation table hold on another machine? Two builds under two CPU kernel sets.

Every x86-64 machine has both kernel sets, so they stand in for two machines: PyTorch's AVX2 kernels with MKL's AVX2
code path (`ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2`) and the generic kernels with MKL's compatible path
(`ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE`). They round the last bits differently, so the two builds train
different weights from the same config and seeds; a world whose training converges gives the same table anyway.
Each build runs `python -m fr_bench.micro build CONFIG --json` in a subprocess with its kernel set and its own
cache (`$FR_BENCH_CACHE/world_stability/<set>`, so a rerun is warm), and reports the validation table.

Prints the per-model, per-domain differences (points, second set minus first); last line one JSON object with
`max_abs_diff_points` and `diffs` ({model: {domain: points}}), plus both tables. Goal: every |diff| <= 3. Run:
  .venv/bin/python benchmarks/world_stability.py                              # experiments/micro.yaml
  .venv/bin/python benchmarks/world_stability.py --config experiments/micro_tiny.yaml
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


def build(config: str, overrides: list[str], cache: Path, kernels: dict[str, str]) -> tuple[dict, float]:
    env = {**os.environ, **kernels, "FR_BENCH_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "fr_bench.micro", "build", config, *overrides, "base.progress_bar=false",
           "expert.progress_bar=false", "--json"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"build with {kernels} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/micro.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value overrides passed to both builds")
    args = parser.parse_args()
    root = Path(os.environ.get("FR_BENCH_CACHE", Path.home() / ".cache" / "fr_bench")) / "world_stability"
    tables, seconds = {}, {}
    for name, kernels in KERNEL_SETS.items():
        out, seconds[name] = build(args.config, args.overrides, root / name, kernels)
        tables[name] = out["accuracy"]
    first, second = (tables[n] for n in KERNEL_SETS)
    diffs = {m: {d: round(100 * (second[m][d] - first[m][d]), 1) for d in first[m]} for m in first}
    domains = list(next(iter(diffs.values())))
    print(f"validation accuracy, {' minus '.join(reversed(list(KERNEL_SETS)))} (points)")
    print(f"{'model':<13}" + "".join(f"{d:>9}" for d in domains))
    for m, row in diffs.items():
        print(f"{m:<13}" + "".join(f"{row[d]:>+9.1f}" for d in domains))
    worst = max(abs(v) for row in diffs.values() for v in row.values())
    print(json.dumps({"max_abs_diff_points": worst, "diffs": diffs, "tables": tables,
                      "build_s": {k: round(v, 1) for k, v in seconds.items()}, "kernel_sets": KERNEL_SETS,
                      "config": args.config, "overrides": args.overrides}))


if __name__ == "__main__":
    main()
