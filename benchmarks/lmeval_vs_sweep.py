"""Wall time of an lm-eval run against a sweep run on the same micro cells (one method, one seed, the world's micro
tasks), each a fresh subprocess with the artifacts already built, so both times are start-up + loading + decoding +
scoring. Also checks that both give the same metrics.

The method's artifacts are built first (untimed) in a fresh cache by the sweep itself; the sweep run then re-evaluates
the cells (`--force`), the lm-eval run scores the exported micro tasks (`python -m fr_bench.lmeval export-tasks`).
Last stdout line: {"sweep_s": .., "lm_eval_s": .., "metrics_equal": .., ...}.
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
    subprocess.run(cmd, env=env, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("config", nargs="?", default="experiments/smoke.yaml")
    p.add_argument("--method", default="fusionroute")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8, help="decode batch of both runs")
    args = p.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="fr_bench_lmeval_vs_sweep_") as tmp:
        t = Path(tmp)
        env = {**os.environ, "FR_BENCH_CACHE": str(t / "cache")}
        sweep = [py, "-m", "fr_bench.sweep", args.config, f"seeds=[{args.seed}]", f"batch_size={args.batch_size}",
                 "--only", args.method, "--no-report", "--out", str(t / "sweep")]
        subprocess.run(sweep, env=env, cwd=REPO, check=True, stdout=subprocess.DEVNULL)  # build (untimed)
        sweep_s = timed([*sweep, "--force"], env)
        subprocess.run([py, "-m", "fr_bench.lmeval", "export-tasks", str(t / "tasks"), "--sweep", args.config],
                       env=env, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        tasks = sorted(x.stem for x in (t / "tasks").glob("*.yaml"))
        lm_eval_s = timed([py, "-m", "fr_bench.lmeval", "--model", "fr_bench", "--model_args",
                           f"sweep={args.config},method={args.method},seed={args.seed}", "--include_path",
                           str(t / "tasks"), "--tasks", ",".join(tasks), "--apply_chat_template", "--batch_size",
                           str(args.batch_size), "--confirm_run_unsafe_code", "--output_path", str(t / "lm_eval")],
                          env)
        rows = {r["task"]: r["metrics"] for r in map(json.loads, (t / "sweep" / "results.jsonl").read_text()
                                                   .splitlines())}
        (results,) = (t / "lm_eval").rglob("results_*.json")
        theirs = json.loads(results.read_text())["results"]
        primary = {name: {"sweep": rows[name], "lm_eval": {k.removesuffix(",none"): v for k, v in theirs[name]
                                                            .items() if k.endswith(",none") and "stderr" not in k}}
                   for name in tasks}
        equal = all(abs(v - p["sweep"][k]) < 1e-9 for p in primary.values() for k, v in p["lm_eval"].items())
    print(json.dumps({"sweep_s": round(sweep_s, 1), "lm_eval_s": round(lm_eval_s, 1), "metrics_equal": equal,
                      "config": args.config, "method": args.method, "seed": args.seed, "tasks": tasks,
                      "rows": {n: int(rows[n]["n"]) for n in tasks}}))


if __name__ == "__main__":
    main()
