"""Decode cost of Collab against one expert and FusionRoute, on the same micro_code prompts of a built sweep.

Reads the world and the seed-0 artifacts of a sweep whose cache is built (FR_BENCH_CACHE) and writes nothing. eos is
disabled, so every output is exactly `--tokens` long and the per-token costs compare like for like. The YAML needs a
`collab` entry (e.g. `collab: {method: collab, group: baseline}` under `methods:`). Last stdout line: JSON with, per
method, `wall_s`, `wall_over_expert` and `positions_per_token` (model positions run per generated token, prompt
included).

    FR_BENCH_CACHE=... python benchmarks/collab_cost.py experiments/ablations.yaml --tokens 64
    ... --override methods.collab.options.rollout_budget=-1
"""
from __future__ import annotations

import argparse
import json
import time

import torch

METHODS = ("expert_code", "fusionroute", "collab")


def main() -> None:
    from transformers import AutoTokenizer

    from fr_bench.config import load_config
    from fr_bench.methods import get_method_class
    from fr_bench.sweep.config import SweepConfig
    from fr_bench.sweep.plan import make_plan
    from fr_bench.sweep.run import artifact_path
    from fr_bench.sweep.worlds import planned_tasks, resolve_world, world_keys
    from fr_bench.tasks import get_task

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--override", action="append", default=[], help="sweep key=value override (repeatable)")
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(SweepConfig, args.config, ["seeds=[0]", *args.override])
    missing = [m for m in METHODS if m not in cfg.methods]
    if missing:
        raise SystemExit(f"{args.config} has no methods {missing}; add e.g. `collab: {{method: collab}}`")
    plan = make_plan(cfg, world_keys(cfg), planned_tasks(cfg))
    world = resolve_world(cfg)
    tokenizer = AutoTokenizer.from_pretrained(world.tokenizer)
    task = get_task("mbpp", data=world.tasks["micro_code"].data)
    prompts = [task.prompt(r, tokenizer) for r in task.load()]
    out = {}
    for display in METHODS:
        cell = next(c for c in plan.cells if c.method == display and c.task == "micro_code")
        entry = cfg.methods[display]
        method = get_method_class(entry.method)(world, {**entry.options, "batch_size": cfg.batch_size}, 0)
        method.load({a: artifact_path(k) for a, k in cell.artifacts.items()})
        method.engine.eos_ids = set()
        start = time.perf_counter()
        gens = method.generate(prompts, args.tokens, [])
        wall = time.perf_counter() - start
        out[display] = {"wall_s": round(wall, 2),
                        "positions_per_token": round(sum(g.cost_tokens for g in gens) / (len(gens) * args.tokens), 2)}
    for d in out:
        out[d]["wall_over_expert"] = round(out[d]["wall_s"] / out["expert_code"]["wall_s"], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
