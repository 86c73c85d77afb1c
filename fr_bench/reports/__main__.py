"""`python -m fr_bench.reports reports/<sweep>`: re-render tables, plots and report.md from a sweep's files."""
from __future__ import annotations

import argparse
import sys

from .report_md import render_report
from .schema import SweepFormatError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fr_bench.reports", description=__doc__)
    parser.add_argument("sweep_dir", nargs="+", help="finished sweep directories (reports/<sweep>)")
    parser.add_argument("--confidence", type=float, default=0.95, help="CI level (default 0.95)")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    args = parser.parse_args(argv)
    for sweep_dir in args.sweep_dir:
        try:
            path = render_report(sweep_dir, args.confidence, args.resamples, args.seed)
        except SweepFormatError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
