"""Cold and warm wall time of a sweep (default: the default sweep), each in a subprocess, in one run.

Cold = a fresh, empty artifact cache (micro world, training, every evaluation); warm = the same command again.
`--cache DIR` keeps that cache (DIR must be empty or absent), so the benchmarks that read the sweep's cells
(`micro_mixed.py`) can run on it afterwards with `FR_BENCH_CACHE=DIR`.
Last stdout line: {"cold_s": .., "warm_s": .., "config": ..}.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=REPO, check=True)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("config", nargs="?", default="experiments/ablations.yaml")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--out", help="keep the report here (default: a temporary folder, deleted afterwards)")
    p.add_argument("--cache", help="keep the cache here (an empty or absent folder; default: a temporary one)")
    args = p.parse_args()
    if args.cache and Path(args.cache).exists() and any(Path(args.cache).iterdir()):
        sys.exit(f"--cache {args.cache}: not empty, so the first run would not be cold; give an empty folder")
    with tempfile.TemporaryDirectory(prefix="fr_bench_sweep_time_") as tmp:
        env = {**os.environ, "FR_BENCH_CACHE": args.cache or str(Path(tmp) / "cache")}
        out = args.out or str(Path(tmp) / "out")
        cmd = [sys.executable, "-m", "fr_bench.sweep", args.config, *args.overrides, "--out", out]
        cold = timed(cmd, env)
        warm = timed(cmd, env)
    print(json.dumps({"cold_s": round(cold, 1), "warm_s": round(warm, 1), "config": args.config}))


if __name__ == "__main__":
    main()
