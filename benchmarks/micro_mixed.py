"""Does micro_mixed need token-level collaboration? Sequence-level oracle vs scripted token-level oracle vs FusionRoute.

- seq_oracle: for each prompt, the best single expert (correct if any expert alone is correct), greedy.
- token_oracle: the scripted policy `fr_bench.micro.oracle.ScheduledExpert` through the decode engine: each expert
  writes the segments of its own domain, switching at the boundaries recorded by the generator.
- fusionroute / switch_rate: the sweep's `fusionroute` cell on micro_mixed for seed 0 (router SFT + CDPO as the
  sweep trains them; built by running the sweep for that one cell when it is not cached), and its share of tokens
  off each sample's home expert (its most chosen one; benchmarks/routing_stats.py's `off_home`).

The oracles read `--split` (default test, the split of the sweep's FusionRoute cell); tune world settings with
`--split validation --no-fusionroute`, never on test. The world is the sweep's (world.micro_config and
world.micro_overrides of the sweep YAML); `--micro key=value ...` adds micro-world overrides. Uses
$FR_BENCH_CACHE. Prints one JSON object as its last line: seq_oracle, token_oracle, fusionroute, switch_rate, per
kind, per expert. Run:
  .venv/bin/python benchmarks/micro_mixed.py                                    # experiments/ablations.yaml
  .venv/bin/python benchmarks/micro_mixed.py --split validation --no-fusionroute --micro expert_replay=0.1
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
CELL = "fusionroute/micro_mixed/*"


def sweep_config(path: str, micro: list[str]):
    from fr_bench.config import load_config
    from fr_bench.sweep.config import SweepConfig

    cfg = load_config(SweepConfig, path, ["seeds=[0]"])
    cfg.world.micro_overrides = list(cfg.world.micro_overrides) + micro
    return cfg


def expert_correct(world, rows, task, batch_size: int) -> dict[str, list[bool]]:
    """Per expert, whether its greedy output on each row passes every check."""
    from fr_bench.methods import get_method_class

    out = {}
    for name in world.experts:
        method = get_method_class("single_model")(world, {"model": name, "batch_size": batch_size})
        method.load({})
        gens = method.generate([task.prompt(r, method.engine.tokenizer) for r in rows], task.max_new_tokens,
                               list(task.stop_sequences))
        out[name] = [r.correct for r in task.score(rows, [g.text for g in gens])]
    return out


def token_oracle_correct(world, rows, task) -> list[bool]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fr_bench.micro.oracle import oracle_outputs

    tokenizer = AutoTokenizer.from_pretrained(world.tokenizer)
    names = list(world.experts)
    models = [AutoModelForCausalLM.from_pretrained(world.experts[n]).eval() for n in names]
    outputs = oracle_outputs(models, {n: i for i, n in enumerate(names)}, tokenizer,
                             [task.prompt(r, tokenizer) for r in rows], [r["segments"] for r in rows],
                             task.max_new_tokens, list(task.stop_sequences))
    return [r.correct for r in task.score(rows, outputs)]


def fusionroute_cell(sweep: str, micro: list[str], workers: int) -> tuple[float, dict]:
    """(accuracy, routing summary) of the sweep's fusionroute cell on micro_mixed, seed 0 (run if not cached)."""
    from routing_stats import summary

    from fr_bench.sweep.cells import cell_done, read_cell
    from fr_bench.sweep.plan import make_plan, select
    from fr_bench.sweep.worlds import planned_tasks, world_keys

    cfg = sweep_config(sweep, micro)
    plan = select(make_plan(cfg, world_keys(cfg), planned_tasks(cfg)), CELL)
    if len(plan.cells) != 1:
        sys.exit(f"{sweep}: expected one cell for {CELL} with seeds=[0], the plan has {len(plan.cells)}")
    key = plan.cells[0].key
    if not cell_done(key):
        overrides = ["seeds=[0]", f"executor.workers={workers}"]
        if cfg.world.micro_overrides:
            overrides.append(f"world.micro_overrides={json.dumps(cfg.world.micro_overrides)}")
        cmd = [sys.executable, "-m", "fr_bench.sweep", sweep, *overrides, "--only", CELL, "--no-report",
               "--out", str(Path(os.environ.get("FR_BENCH_CACHE", "/tmp")) / "micro_mixed_report")]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0 or not cell_done(key):
            sys.exit(f"the sweep for {CELL} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result, samples = read_cell(key)
    return result["primary"], summary([s["expert_choices"] for s in samples if s.get("expert_choices")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="experiments/ablations.yaml", help="sweep YAML whose world is used")
    parser.add_argument("--micro", nargs="*", default=[], help="extra micro-world overrides, key=value")
    parser.add_argument("--split", default="test", choices=("test", "validation"))
    parser.add_argument("--no-fusionroute", action="store_true", help="skip the sweep's FusionRoute cell")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1, help="worker processes of the sweep run for FusionRoute")
    args = parser.parse_args()
    import torch

    from fr_bench.micro.build import build_micro_world
    from fr_bench.sweep.worlds import _micro_config
    from fr_bench.tasks import get_task

    torch.set_num_threads(1)
    cfg = sweep_config(args.sweep, args.micro)
    micro_cfg = _micro_config(cfg.world)
    world, info = build_micro_world(micro_cfg)
    task = get_task("mixed", data=str(Path(info["paths"]["data"]) / "mixed" / f"{args.split}.jsonl"),
                    max_new_tokens=micro_cfg.eval.max_new_tokens["mixed"])
    rows = task.load()
    experts = expert_correct(world, rows, task, args.batch_size)
    seq = [any(c) for c in zip(*experts.values())]
    tok = token_oracle_correct(world, rows, task)
    kinds: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for i, row in enumerate(rows):
        k = kinds[row["kind"]]
        k["seq_oracle"].append(seq[i])
        k["token_oracle"].append(tok[i])
        for name, c in experts.items():
            k[f"expert_{name}"].append(c[i])

    def pct(xs: list[bool]) -> float:
        return round(100 * sum(xs) / max(len(xs), 1), 1)

    per_kind = {kind: {m: pct(v) for m, v in cols.items()} for kind, cols in sorted(kinds.items())}
    result = {"seq_oracle": pct(seq), "token_oracle": pct(tok), "fusionroute": None, "switch_rate": None,
              "split": args.split, "n": len(rows), "experts": {n: pct(c) for n, c in experts.items()},
              "per_kind": per_kind}
    if not args.no_fusionroute:
        acc, routing = fusionroute_cell(args.sweep, args.micro, args.workers)
        result.update(fusionroute=round(100 * acc, 1), switch_rate=round(100 * routing["off_home"], 2),
                      fusionroute_split="test", routing=routing)
    cols = list(next(iter(per_kind.values())))
    print(f"{'kind':<10}" + "".join(f"{c:>15}" for c in cols))
    for kind, vals in per_kind.items():
        print(f"{kind:<10}" + "".join(f"{vals[c]:>15.1f}" for c in cols))
    print(f"seq_oracle {result['seq_oracle']}  token_oracle {result['token_oracle']}  "
          f"fusionroute {result['fusionroute']}  switch_rate {result['switch_rate']} (% of tokens)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
