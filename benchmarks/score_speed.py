"""How fast the sandbox scores HumanEval: the 164 canonical solutions, end to end through `HumanEval.score`.

Prints {"humaneval_canonical_s": wall seconds, "pass_at_1": ..., ...} as its last line. Target on the 2-core dev
box: <= 5 s with pass@1 = 1.0. Run: `.venv/bin/python benchmarks/score_speed.py [--data PATH] [--workers N]`.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from fr_bench.scoring.sandbox import Sandbox, SandboxConfig
from fr_bench.tasks import get_task

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "humaneval" / "HumanEval.jsonl.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()

    config = SandboxConfig(workers=args.workers)
    task = get_task("humaneval", data=args.data, sandbox=config)
    rows = task.load()
    outputs = [f"```python\n{r['prompt']}{r['canonical_solution']}```" for r in rows]
    with Sandbox(config) as probe:  # report the isolation level actually used
        isolation = probe.isolation
    start = time.perf_counter()
    results = task.score(rows, outputs)
    elapsed = time.perf_counter() - start
    metrics = task.aggregate(results)
    print(json.dumps({"humaneval_canonical_s": round(elapsed, 3), "pass_at_1": metrics["pass@1"], "n": metrics["n"],
                      "workers": config.workers or os.cpu_count(), "isolation": isolation,
                      "load_avg_1m": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
