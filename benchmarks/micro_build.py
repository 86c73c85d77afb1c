"""How long the micro world takes to build, cold and warm, and how specialised its experts are.

Cold: `python -m fr_bench.micro build CONFIG --json` in a fresh, empty FR_BENCH_CACHE (data, tokenizer, base, three
experts, the evaluation table). Warm: the same command again, everything from the cache. Both are wall-clock times
of the whole process (Python start-up and imports included). Accuracy: the primary metric of each model on each
domain's micro validation split, scored by the real task scorers.

The targets checked (and reported under "targets"), on the validation table: the base scores >= 30% on
micro_general; each expert scores >= 50% on its own domain, beats every other model there, and keeps >= 1/3 of the
base's score on every other single-domain task (experts like fine-tunes of one instruct model, not from-scratch
specialists).

Prints one JSON object as its last line. Run:
  .venv/bin/python benchmarks/micro_build.py                          # experiments/micro.yaml
  .venv/bin/python benchmarks/micro_build.py --config experiments/micro_tiny.yaml expert.max_steps=5
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

ROOT = Path(__file__).resolve().parents[1]
EXPERT_DOMAINS = ("math", "code", "if")


def build(config: str, overrides: list[str], cache: str) -> tuple[float, dict]:
    env = {**os.environ, "FR_BENCH_CACHE": cache, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "fr_bench.micro", "build", config, *overrides,
           "base.progress_bar=false", "expert.progress_bar=false", "--json"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"build failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return seconds, json.loads(proc.stdout.strip().splitlines()[-1])


def targets(acc: dict[str, dict[str, float]]) -> dict[str, bool]:
    out = {"base_general>=30%": acc["base"]["general"] >= 0.3}
    for d in EXPERT_DOMAINS:
        own = acc[f"expert_{d}"][d]
        out[f"expert_{d}>=50%"] = own >= 0.5
        out[f"expert_{d}_best_at_home"] = all(own > acc[m][d] for m in acc if m != f"expert_{d}")
        out[f"expert_{d}_keeps_a_third_of_base_elsewhere"] = all(
            acc[f"expert_{d}"][o] >= acc["base"][o] / 3 for o in acc["base"] if o not in (d, "mixed"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/micro.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value overrides passed to the build")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="fr_bench_micro_") as cache:
        cold_s, cold = build(args.config, args.overrides, cache)
        warm_s, warm = build(args.config, args.overrides, cache)
    if warm["info"]["0"]["built"]:
        sys.exit(f"the warm build rebuilt {warm['info']['0']['built']}: the cache key is not stable")
    acc = cold["accuracy"]
    result = {"cold_s": round(cold_s, 1), "warm_s": round(warm_s, 1), "accuracy": acc,
              "stages_s": {k: round(v, 1) for k, v in cold["info"]["0"]["seconds"].items()},
              "targets": targets(acc), "config": args.config, "overrides": args.overrides,
              "loadavg_1min_at_start": round(load, 2), "cpus": os.cpu_count()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
