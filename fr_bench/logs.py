"""One logging set-up for the sweep, its worker processes and the CLIs: every line once, and no per-run noise.

- fr_bench's own loggers at `level` (INFO by default; DEBUG with an entry point's `-v`, `add_verbose_flag`),
  everything else at WARNING, one handler on the root.
- Lightning installs its own handler on `lightning.pytorch` / `lightning.fabric`; they stop propagating to the root,
  so their lines are not printed twice.
- Per-run noise is dropped: Lightning's cloud-logging tip (once per Trainer) and transformers' "Loading weights" /
  "Writing model shards" progress bars (once per model load in every cell).
"""
from __future__ import annotations

import argparse
import logging

FORMAT = "%(asctime)s %(name)s: %(message)s"


class _DropTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


def add_verbose_flag(parser: argparse.ArgumentParser) -> None:
    """The `-v` every entry point takes; pass `level(args.verbose)` to `configure`."""
    parser.add_argument("-v", "--verbose", action="store_true", help="also print fr_bench's debug details")


def level(verbose: bool) -> int:
    return logging.DEBUG if verbose else logging.INFO


def configure(level: int = logging.INFO) -> None:
    logging.basicConfig(level=logging.WARNING, format=FORMAT, datefmt="%H:%M:%S")
    logging.getLogger("fr_bench").setLevel(level)
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).propagate = False
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropTip) for f in rank_zero.filters):
        rank_zero.addFilter(_DropTip())
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
