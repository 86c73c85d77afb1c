"""`fr-bench`: one command for every entry point (each also runs as `python -m <module>`).

    fr-bench sweep experiments/ablations.yaml --dry-run
    fr-bench compare reports/A reports/B
    fr-bench lm-eval --model fr_bench --model_args sweep=experiments/ablations.yaml,method=fusionroute --tasks gsm8k

Everything after the subcommand is handed to that entry point unchanged; its `--help` lists its own options.
"""
from __future__ import annotations

import importlib
import sys
from typing import Sequence

# subcommand -> ("module:function", what it does). The function takes argv and returns an exit code.
COMMANDS: dict[str, tuple[str, str]] = {
    "sweep": ("fr_bench.sweep.__main__:main", "train what is missing, evaluate, cache, render reports/"),
    "report": ("fr_bench.reports.__main__:main", "re-render a sweep's tables, plots and report.md"),
    "compare": ("fr_bench.compare:main", "does sweep B beat sweep A (seed- and id-level test)"),
    "judge": ("fr_bench.reports.judge:main", "pairwise LLM-judge win rates for a sweep"),
    "micro": ("fr_bench.micro.__main__:main", "build the micro world and print its specialisation table"),
    "score": ("fr_bench.score:main", "score a predictions file with a benchmark's scorer"),
    "lm-eval": ("fr_bench.lmeval:main", "lm-evaluation-harness's CLI with every sweep method as a model"),
    "export-lm-eval-tasks": ("fr_bench.lmeval_tasks:export_tasks_main", "write the micro tasks as lm-eval tasks"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items())
    return f"usage: fr-bench COMMAND [ARGS ...]\n\ncommands:\n{rows}\n\n`fr-bench COMMAND --help` for its options."


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"fr-bench: unknown command '{name}'\n\n{usage()}", file=sys.stderr)
        return 2
    module, _, func = COMMANDS[name][0].partition(":")
    result = getattr(importlib.import_module(module), func)(rest)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
