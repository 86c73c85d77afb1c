"""`python -m fr_bench.micro build CONFIG.yaml [key=value ...] [--workers N] [--seeds S ...]`: build the micro world
(one per seed: `MicroConfig.for_seed`), print the specialisation table (the mean over the seeds).

Progress (Lightning bars, stage messages; `-v` adds which evaluations came from the cache) goes to stderr through
`fr_bench.logs`; the table, the World's paths and what was built go to stdout. `--json` prints one JSON object
instead.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from dataclasses import asdict

from .. import logs
from ..config import ConfigError, load_config
from ..parallel import WorkerPool
from .build import build_micro_worlds, format_table, specialisation_table
from .config import MicroConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fr_bench.micro", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build (or reuse) tokenizer, base and experts; print the table")
    build.add_argument("config", help="YAML file with MicroConfig keys (e.g. experiments/micro.yaml)")
    build.add_argument("overrides", nargs="*", help="key=value overrides, e.g. expert.max_steps=200")
    build.add_argument("--workers", type=int, default=1,
                       help="train on this many worker processes (the experts at once); 1 = in this process")
    build.add_argument("--no-table", action="store_true", help="skip evaluating the specialisation table")
    build.add_argument("--seeds", type=int, nargs="+", default=[0],
                       help="build the world of each seed (training seeds offset by it, same data); default 0 = "
                            "the config as given")
    build.add_argument("--json", action="store_true", help="print one JSON object (worlds, info, tables)")
    logs.add_verbose_flag(build)
    args = parser.parse_args(argv)
    logs.configure(logs.level(args.verbose))
    try:
        # Lightning's bars write to stdout: off with --json, so its one line is the whole of stdout
        quiet = ["base.progress_bar=false", "expert.progress_bar=false"] if args.json else []
        cfg = load_config(MicroConfig, args.config, [*args.overrides, *quiet]).validate()
        if args.workers < 1:
            raise ConfigError(f"--workers {args.workers}: must be >= 1 (1 = train in this process).")
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    cfgs = [cfg.for_seed(s) for s in args.seeds]
    with WorkerPool(args.workers, cfg.threads) if args.workers > 1 else contextlib.nullcontext() as pool:
        built = build_micro_worlds(cfgs, pool)
    per_seed = None if args.no_table else {
        s: specialisation_table(c, world, info) for s, c, (world, info) in zip(args.seeds, cfgs, built)}
    table = None if per_seed is None else mean_table(list(per_seed.values()))
    if args.json:
        print(json.dumps({"seeds": args.seeds, "worlds": {s: asdict(w) for s, (w, _) in zip(args.seeds, built)},
                          "info": {s: i for s, (_, i) in zip(args.seeds, built)}, "accuracy": table,
                          "per_seed": per_seed}, default=str))
        return 0
    if table is not None:
        if len(args.seeds) > 1:
            print(f"mean over seeds {args.seeds}")
        print(format_table(table))
    print("built now: " + (", ".join(built[0][1]["built"]) or "nothing (all cached)"))
    for s, (_, info) in zip(args.seeds, built):
        for name, path in info["paths"].items():
            print(f"{name:<12} {path}" if len(args.seeds) == 1 else f"seed{s} {name:<12} {path}")
    return 0


def mean_table(tables: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """The per-model, per-domain mean of equally shaped tables (one per seed)."""
    return {m: {d: sum(t[m][d] for t in tables) / len(tables) for d in row} for m, row in tables[0].items()}


if __name__ == "__main__":
    sys.exit(main())
