"""`python -m fr_bench.micro build CONFIG.yaml [key=value ...] [--workers N]`: build the micro world, print the
specialisation table.

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
from .build import build_micro_world, format_table, specialisation_table
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
    build.add_argument("--json", action="store_true", help="print one JSON object (world, info, table)")
    logs.add_verbose_flag(build)
    args = parser.parse_args(argv)
    logs.configure(logs.level(args.verbose))
    try:
        cfg = load_config(MicroConfig, args.config, args.overrides).validate()
        if args.workers < 1:
            raise ConfigError(f"--workers {args.workers}: must be >= 1 (1 = train in this process).")
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    with WorkerPool(args.workers, cfg.threads) if args.workers > 1 else contextlib.nullcontext() as pool:
        world, info = build_micro_world(cfg, pool)
    table = None if args.no_table else specialisation_table(cfg, world, info)
    if args.json:
        print(json.dumps({"world": asdict(world), "info": info, "accuracy": table}, default=str))
        return 0
    if table is not None:
        print(format_table(table))
    print("built now: " + (", ".join(info["built"]) or "nothing (all cached)"))
    for name, path in info["paths"].items():
        print(f"{name:<12} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
