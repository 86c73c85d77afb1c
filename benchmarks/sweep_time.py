"""Cold and warm wall time of a sweep (default: the default sweep), each in a subprocess, in one run, and where the
cold run's time went.

Cold = a fresh, empty artifact cache (micro world, training, every evaluation); warm = the same command again.
`--cache DIR` keeps that cache (DIR must be empty or absent), so the benchmarks that read the sweep's cells
(`micro_mixed.py`) can run on it afterwards with `FR_BENCH_CACHE=DIR`.

The cold run's timeline is read from its log (`timeline`): the micro build's `<model>: N steps, ..., T s` line per
world model, and the scheduler's `<task> done in T s` per artifact and evaluation job. The world's models train
before the task graph starts; the graph's span is from its first task's start to its last one's end, and
`graph_busy_workers` = its worker-seconds / span (2.0 on two fully busy workers: the schedule wastes nothing).
Last stdout line: {"cold_s", "warm_s", "config", "cold_timeline": {"world_models_worker_s", "graph_span_s",
"graph_worker_s", "graph_busy_workers", "worker_s_by_item"}}.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# no ^: on a terminal-less stderr a log line can follow a progress bar's last redraw on the same line
TASK_DONE = re.compile(r"(\d\d):(\d\d):(\d\d) fr_bench\.sweep: (.+?) done in ([\d.]+) s$", re.M)
MODEL_DONE = re.compile(r"\d\d:\d\d:\d\d fr_bench\.micro\.build: (\w+): \d+ steps, \d+ tokens, ([\d.]+)s,", re.M)


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Seconds the command took and its log (stderr), which still streams to this process's stderr."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stderr:
        sys.stderr.write(line)
        lines.append(line)
    if proc.wait() != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return time.perf_counter() - start, "".join(lines)


def timeline(log: str) -> dict:
    """Where a sweep's time went, from its log (see the module docstring). An item is an artifact kind
    (`artifact router_sft`) or a method's evaluation jobs (`cells fusionroute`), summed over seeds."""
    by_item: dict[str, float] = defaultdict(float)
    spans = []
    for h, m, s, label, seconds in TASK_DONE.findall(log):
        end, took = int(h) * 3600 + int(m) * 60 + int(s), float(seconds)
        spans.append((end - took, end))
        by_item[label.split("[")[0].split("/")[0]] += took
    start = min((a for a, _ in spans), default=0.0)
    span = max(((b - start) % 86400 for _, b in spans), default=0.0)   # timestamps wrap at midnight
    worker_s = sum(by_item.values())
    return {"world_models_worker_s": round(sum(float(s) for _, s in MODEL_DONE.findall(log)), 1),
            "graph_span_s": round(span, 1), "graph_worker_s": round(worker_s, 1),
            "graph_busy_workers": round(worker_s / span, 2) if span else None,
            "worker_s_by_item": {k: round(v, 1) for k, v in sorted(by_item.items(), key=lambda kv: -kv[1])}}


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
        cold, log = timed(cmd, env)
        warm, _ = timed(cmd, env)
    print(json.dumps({"cold_s": round(cold, 1), "warm_s": round(warm, 1), "config": args.config,
                      "cold_timeline": timeline(log)}))


if __name__ == "__main__":
    main()
