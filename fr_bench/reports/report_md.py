"""`render_report(sweep_dir)`: tables/, plots/ and report.md of a finished sweep, from its files alone."""
from __future__ import annotations

from pathlib import Path

from ..cache import atomic_write_text
from .plots import write_plots
from .schema import load_sweep
from .summary import SweepSummary, summarize
from .tables import (benchmark_label, cost_grid, main_caption, main_table_markdown, metrics_markdown, routing_grid,
                     write_tables)

CAPTIONS = {
    "scores": "Primary metric per benchmark (x100); error bars: 95% CI (clipped to [0, 100]); † above a bar: "
              "significantly different from {ref} (paired bootstrap).",
    "ablation_deltas": "{ref} minus each ablation, per benchmark, in points (x100), with the 95% paired bootstrap "
                       "CI. A bar whose CI excludes 0 is a significant effect of the removed component.",
    "quality_vs_cost": "Avg score against decode cost (tokens run through any model per sample, relative to one "
                       "expert decoding alone when the sweep has experts). Error bars: 95% CI of Avg.",
    "routing_share": "Share of generated tokens routed to each expert, per benchmark (pooled over samples and "
                     "seeds), for every method that records its expert choices.",
    "routing_map": "Example outputs (first seed), each token on the colour of the expert that produced it. Examples "
                   "are picked per domain, preferring outputs that switch experts.",
}


def _figure(name: str, summary: SweepSummary, title: str) -> str:
    caption = CAPTIONS[name].format(ref=summary.reference)
    return (f"### {title}\n\n![{title}](plots/{name}.png)\n\n*{caption}* "
            f"([PDF](plots/{name}.pdf))\n")


def _statistics_text(summary: SweepSummary) -> str:
    seeds = summary.n_seeds
    ci = ("a Student-t interval over the per-seed scores (seeds are the independent replications)" if seeds > 1
          else f"a percentile bootstrap over the samples of the single seed ({summary.n_resamples} resamples)")
    return (f"- **Cells** show the primary metric x100 with one decimal, ± half the width of its "
            f"{int(100 * summary.confidence)}% CI: {ci}. `tables/main.csv` has the exact bounds.\n"
            f"- **Avg** is the mean of the benchmark scores of "
            f"{', '.join(benchmark_label(t) for t in summary.avg_tasks) or '(none)'}; general-quality columns are "
            f"reported beside it, not averaged into it (as in the paper).\n"
            f"- **†** marks a method whose difference to **{summary.reference}** is significant: the paired "
            f"bootstrap {int(100 * summary.confidence)}% CI of (method − {summary.reference}) excludes 0. Pairs are "
            f"the same sample id (and seed) under both methods; ids are resampled with replacement "
            f"({summary.n_resamples} resamples, seeded), all seeds of an id together. The Avg difference resamples "
            f"each benchmark independently (stratified bootstrap). This is a per-comparison test, not corrected "
            f"for the number of cells.\n"
            f"- **Bold** is the best mean in a column after rounding (ties are all bold).\n")


def _general_text(summary: SweepSummary) -> str:
    general = [t for t in summary.tasks if summary.domains[t] == "general"]
    if not general:
        return ("No general-quality benchmark in this sweep. With real models, run the pairwise judge "
                "(`python -m fr_bench.reports.judge`, see docs/reports.md) to add a win-rate column.\n")
    names = ", ".join(benchmark_label(t) for t in general)
    return (f"General quality is reported by {names}. In the micro world that is the micro_general task's own "
            f"score (no judge); with real models it is the pairwise judge's win rate against the judge's "
            f"reference method, (wins + 0.5 ties) / n, judged in both answer orders (docs/reports.md).\n")


def render_report_text(summary: SweepSummary, plots: dict[str, list[Path]], tables: dict[str, list[str]]) -> str:
    sweep, meta = summary.sweep, summary.sweep.meta
    parts = [f"# Benchmark report: {sweep.name}\n",
             f"Reference method: **{summary.reference}**. Methods: {', '.join(summary.methods)}. "
             f"Benchmarks: {', '.join(benchmark_label(t) for t in summary.tasks)}. Seeds: "
             f"{sorted({r.seed for r in sweep.results})}. Experts: {', '.join(meta.expert_names) or '(none)'}. "
             f"Created {meta.created}.\n"]
    if sweep.config_text is not None:
        parts.append(f"<details><summary>Sweep config (config.yaml)</summary>\n\n```yaml\n"
                     f"{sweep.config_text.rstrip()}\n```\n\n</details>\n")
    parts.append(f"## Main results\n\n{main_table_markdown(summary)}\n*{main_caption(summary)}*\n\n"
                 f"LaTeX: [tables/main.tex](tables/main.tex) · CSV: [tables/main.csv](tables/main.csv)\n")
    parts.append(f"### How to read the statistics\n\n{_statistics_text(summary)}")
    parts.append("## Figures\n")
    titles = {"scores": "Scores per benchmark", "ablation_deltas": "Ablations",
              "quality_vs_cost": "Quality vs decode cost"}
    for name, title in titles.items():
        if name in plots:
            parts.append(_figure(name, summary, title))
    parts.append("## Routing\n")
    if "routing" in tables:
        parts.append(f"Share of generated tokens per expert (%):\n\n{routing_grid(summary).to_markdown()}\n"
                     f"CSV: [tables/routing_share.csv](tables/routing_share.csv)\n")
        for name, title in (("routing_share", "Expert-selection share"), ("routing_map", "Token-level routing map")):
            if name in plots:
                parts.append(_figure(name, summary, title))
    else:
        parts.append("No method in this sweep recorded per-token expert choices.\n")
    parts.append(f"## General quality\n\n{_general_text(summary)}")
    parts.append(f"## All metrics per benchmark\n\nx100, mean ± CI half-width (same intervals as the main table; "
                 f"bold = best per column).\n\n{metrics_markdown(summary)}\n"
                 f"LaTeX: [tables/metrics.tex](tables/metrics.tex) · CSV: [tables/metrics.csv](tables/metrics.csv)\n")
    parts.append(f"## Decode cost\n\n{cost_grid(summary).to_markdown()}\n*Decode tokens / sample: tokens run "
                 f"through any model forward per evaluated sample, over all benchmarks and seeds; x single expert: "
                 f"relative to the mean of the expert rows. Wall s: summed over cells (machine-dependent).*\n")
    return "\n".join(parts)


def render_report(sweep_dir: str | Path, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> Path:
    """Write `tables/`, `plots/` and `report.md` into the sweep directory; returns the report's path."""
    root = Path(sweep_dir)
    summary = summarize(load_sweep(root), confidence=confidence, n_resamples=n_resamples, seed=seed)
    tables = write_tables(summary, root / "tables")
    plots = write_plots(summary, root / "plots")
    path = root / "report.md"
    atomic_write_text(path, render_report_text(summary, plots, tables))
    return path
