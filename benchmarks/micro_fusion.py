"""FusionRoute on the micro world: routing accuracy on held-out informative positions, and accuracy per domain of
FusionRoute, its ablations and each expert (the trained pieces come from the sweep's cache, built if missing).

Routing accuracy: on the micro validation split (rows neither the experts nor the router trained on), at every
response position where the experts' greedy tokens differ, is the router's argmax expert the one that gives the gold
token the highest log-prob? Last stdout line: {"routing_accuracy": .., "chance": .., "informative_positions": ..,
"accuracy": {"<method>": {"<domain>": ..}}}.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from fr_bench.chat import encode_example
from fr_bench.config import load_config
from fr_bench.sweep.config import SweepConfig
from fr_bench.sweep.executor import open_executor
from fr_bench.sweep.plan import make_plan, select
from fr_bench.sweep.run import artifact_path, assemble, execute
from fr_bench.sweep.worlds import planned_tasks, resolve_worlds, world_keys

METHODS = "fusionroute,fusionroute_no_complement,fusionroute_sft_only,expert_*,base"


@torch.no_grad()
def routing_accuracy(world, router_dir: Path, max_rows: int) -> dict[str, float]:
    from transformers import AutoTokenizer

    from fr_bench.models.router import RouterModel
    from fr_bench.training.data import read_jsonl
    from fr_bench.training.expert_signals import compute_expert_signals

    tok = AutoTokenizer.from_pretrained(world.tokenizer)
    examples = []
    for domain, path in world.sft_data.items():
        rows = read_jsonl(Path(path).with_name("validation.jsonl"))[:max_rows]
        examples += [encode_example(tok, r["prompt"], r["response"]) for r in rows]
    table = compute_expert_signals(list(world.experts.values()), examples, pad_id=tok.pad_token_id)
    router = RouterModel.from_pretrained(router_dir).eval()
    hits = total = 0
    for i, ex in enumerate(examples):
        sig = table.example(i)
        ids = torch.tensor(ex["input_ids"][:-1])[None]
        choice = router(ids).routing_logits[0].argmax(-1)
        mask = sig["informative"]
        target = sig["gold_logps"].argmax(-1)
        hits += int((choice[mask] == target[mask]).sum())
        total += int(mask.sum())
    return {"routing_accuracy": hits / max(total, 1), "informative_positions": total,
            "chance": 1 / len(world.experts)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("config", nargs="?", default="experiments/ablations.yaml")
    p.add_argument("overrides", nargs="*", default=["seeds=[0]"])
    p.add_argument("--max-rows", type=int, default=100, help="validation rows per domain for routing accuracy")
    args = p.parse_args()
    cfg = load_config(SweepConfig, args.config, args.overrides)
    plan = select(make_plan(cfg, world_keys(cfg), planned_tasks(cfg)), METHODS)
    with open_executor(cfg.executor, cfg.threads) as executor:
        worlds = resolve_worlds(cfg, executor.processes)
        execute(plan, worlds, cfg, executor)
    with tempfile.TemporaryDirectory() as tmp:
        assemble(plan, worlds[cfg.seeds[0]], cfg, Path(tmp))
        rows = [json.loads(line) for line in (Path(tmp) / "results.jsonl").read_text().splitlines()]
    accuracy: dict[str, dict[str, float]] = {}
    for r in rows:
        accuracy.setdefault(r["method"], {}).setdefault(r["domain"], []).append(r["primary"])
    accuracy = {m: {d: round(sum(v) / len(v), 4) for d, v in doms.items()} for m, doms in accuracy.items()}
    router = next(n for n in plan.artifacts if n.name == "router_cdpo")
    stats = routing_accuracy(worlds[router.seed], artifact_path(router.key), args.max_rows)
    print(json.dumps({**{k: round(v, 4) if isinstance(v, float) else v for k, v in stats.items()},
                      "accuracy": accuracy}))


if __name__ == "__main__":
    main()
