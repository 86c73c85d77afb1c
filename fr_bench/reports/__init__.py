"""Reports of a finished sweep, rendered from its files (no model needed).

schema (on-disk layout and loaders) -> summary (every number, with stats) -> tables / plots -> report_md.
`python -m fr_bench.reports reports/<sweep>` re-renders; `python -m fr_bench.compare A B` compares two sweeps;
`python -m fr_bench.reports.judge` adds a pairwise-judge win rate for real models.
"""
