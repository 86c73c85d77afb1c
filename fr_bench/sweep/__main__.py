"""`python -m fr_bench.sweep experiments/ablations.yaml [key=value ...] [--dry-run] [--only PATTERN] [--force]`

Trains what is missing, evaluates every method on every task and seed, caches and resumes, and writes paper-style
tables and plots under reports/<name>/.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .. import logs
from ..config import ConfigError, load_config
from ..plugins import load_plugins, resolve_plugins
from .config import SweepConfig
from .executor import check_executor, open_executor
from .plan import make_plan, select
from .worlds import planned_tasks, resolve_worlds, world_keys, worlds_to_build


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fr_bench.sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="sweep YAML (see experiments/)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. seeds=[0] limit=20")
    p.add_argument("--dry-run", action="store_true", help="print the plan (artifacts, cells, what is cached) and exit")
    p.add_argument("--only", metavar="PATTERN",
                   help="glob(s) over cell labels method/task/seedN, method or task names; comma-separated")
    p.add_argument("--force", action="store_true", help="re-evaluate the selected cells even if cached")
    p.add_argument("--force-train", action="store_true", help="also rebuild the artifacts the selected cells need")
    p.add_argument("--no-report", action="store_true",
                   help="write the results but not the tables, plots and report.md (an earlier render's are "
                   "removed: they would disagree with the new results)")
    p.add_argument("--out", help="report folder (default: <reports_dir>/<name>)")
    logs.add_verbose_flag(p)
    return p.parse_intermixed_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs.configure(logs.level(args.verbose))
    try:
        cfg = load_config(SweepConfig, args.config, args.overrides)
        cfg.plugins = resolve_plugins(cfg.plugins, Path(args.config).resolve().parent)
        load_plugins(cfg.plugins)
        check_executor(cfg.executor)
        full = make_plan(cfg, world_keys(cfg), planned_tasks(cfg))
        plan = select(full, args.only)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from ..cache import is_complete
    from .cells import cell_done
    from . import code_index
    from .run import artifact_path, assemble, execute, render

    if args.dry_run:
        print(plan.describe())
        try:
            worlds = worlds_to_build(cfg)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for seed, names in worlds.items():
            print(f"world seed{seed}: " + (f"to train {', '.join(names)}" if names else "cached"))
        todo_w = sum(len(names) for names in worlds.values())
        todo_a = sum(not is_complete(artifact_path(n.key)) for n in plan.artifacts)
        todo_c = len({c.key for c in plan.cells if not cell_done(c.key)})
        print(f"to train in the world(s): {todo_w}; to build: {todo_a} artifact(s); to evaluate: {todo_c} cell(s)")
        stale = code_index.describe_stale(plan)
        if stale:
            print("why:\n" + stale)
        return 0
    start = time.perf_counter()
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    # one worker pool for the world, artifacts and cells
    with open_executor(cfg.executor, cfg.threads, tuple(cfg.plugins)) as executor:
        try:
            worlds = resolve_worlds(cfg, executor.processes)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        built, ran = execute(plan, worlds, cfg, executor, force_train=args.force_train,
                             force=args.force or args.force_train)
    code_index.record(plan)
    out = Path(args.out) if args.out else Path(cfg.reports_dir) / cfg.name
    assemble(full, worlds[cfg.seeds[0]], cfg, out)     # --only chose what to run; the report holds every finished cell
    if args.no_report:
        from ..reports.report_md import remove_rendered

        if removed := remove_rendered(out):   # an earlier render's tables would disagree with these results
            print(f"removed the earlier {', '.join(removed)} of {out}; re-render with: python -m fr_bench.reports {out}")
    else:
        render(out)
    print(f"sweep '{cfg.name}': built {built} artifact(s), evaluated {ran} cell(s) in "
          f"{time.perf_counter() - start:.1f}s; report in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
