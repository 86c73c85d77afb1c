"""How often trained token-level routers switch experts: the routing that decode_overhead.py's schedule imitates.

Reads a sweep report's per-sample logs (`<report>/samples/<method>/<task>/seed*.jsonl`, each sample with its
`expert_choices`) and prints, per method and task: routed tokens, the share of tokens off the sample's home expert
(its most chosen one), switches per token, the mean length of a stay off home (excursion), and the forwards per
single-model forward that lock-step batches of 8 need (1 router + distinct experts chosen per step).

The default is the committed 3-seed micro-world report, so it runs from a fresh checkout:
  .venv/bin/python benchmarks/routing_stats.py                       # reports/ablations, FusionRoute variants
  .venv/bin/python benchmarks/routing_stats.py reports/mine --methods fusionroute token_confidence
Prints one JSON object as its last line: {method: {task: {tokens, off_home, switches_per_token, excursion,
forwards_b8}}}.
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_METHODS = ["fusionroute", "fusionroute_no_complement", "fusionroute_sft_only"]


def routes(folder: Path) -> list[list[int]]:
    """Expert choices of every sample under `folder` (all seeds), in file order."""
    out = []
    for path in sorted(folder.glob("seed*.jsonl")):
        for line in path.read_text().splitlines():
            choices = json.loads(line).get("expert_choices")
            if choices:
                out.append(choices)
    return out


def summary(rows: list[list[int]], batch: int = 8) -> dict[str, float]:
    tokens = off = switches = 0
    excursions: list[int] = []
    for choices in rows:
        home = Counter(choices).most_common(1)[0][0]
        tokens += len(choices)
        off += sum(c != home for c in choices)
        switches += sum(a != b for a, b in zip(choices, choices[1:]))
        run = 0
        for c in choices + [home]:
            if c != home:
                run += 1
            elif run:
                excursions.append(run)
                run = 0
    steps = distinct = 0
    for i in range(0, len(rows), batch):
        group = rows[i:i + batch]
        for t in range(max(map(len, group))):
            steps += 1
            distinct += len({r[t] for r in group if t < len(r)})
    return {"tokens": tokens, "off_home": round(off / tokens, 4), "switches_per_token": round(switches / tokens, 4),
            "excursion": round(sum(excursions) / len(excursions), 2) if excursions else 0.0,
            "forwards_b8": round(1 + distinct / steps, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("report", nargs="?", default=str(REPO / "reports" / "ablations"))
    parser.add_argument("--methods", nargs="+", default=DEFAULT_METHODS)
    args = parser.parse_args()
    samples = Path(args.report) / "samples"
    if not samples.is_dir():
        parser.error(f"{samples} does not exist: give a sweep report folder (its samples/ hold the per-sample logs)")
    result: dict[str, dict[str, dict[str, float]]] = {}
    print(f"{'method':28} {'task':14} {'tokens':>7} {'off home':>9} {'switch/tok':>10} {'excursion':>9} {'fwd b8':>7}")
    for method in args.methods:
        for task_dir in sorted((samples / method).glob("*")):
            rows = routes(task_dir)
            if not rows:
                continue
            s = result.setdefault(method, {})[task_dir.name] = summary(rows)
            print(f"{method:28} {task_dir.name:14} {s['tokens']:7d} {s['off_home']:9.2%} "
                  f"{s['switches_per_token']:10.2%} {s['excursion']:9.2f} {s['forwards_b8']:7.3f}")
    if not result:
        parser.error(f"no sample with expert_choices under {samples} for methods {args.methods}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
