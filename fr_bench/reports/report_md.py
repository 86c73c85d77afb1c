"""`render_report(sweep_dir)`: tables/, plots/ and report.md of a finished sweep, from its files alone."""
from __future__ import annotations

import shutil
from pathlib import Path

from ..cache import atomic_write_text
from .plots import write_plots
from .schema import load_sweep
from .summary import SweepSummary, summarize
from .tables import (benchmark_label, cost_grid, main_caption, main_table_markdown, metrics_markdown, routing_grid,
                     write_tables)

CAPTIONS = {
    "scores": "Primary metric per benchmark (x100); error bars: 95% CI (clipped to [0, 100]); † above a bar: "
              "significantly different from {ref} (seed-level and id-level tests, Holm-corrected; see the "
              "statistics notes).",
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
    level = int(100 * summary.confidence)
    ci = ("a Student-t interval over the per-seed scores (seeds are the independent replications)" if seeds > 1
          else f"a percentile bootstrap over the samples of the single seed ({summary.n_resamples} resamples)")
    return (f"- **Cells** show the primary metric x100 with one decimal, ± half the width of its "
            f"{level}% CI: {ci}. `tables/main.csv` has the exact bounds.\n"
            f"- **‡** marks a method that does not depend on the seed (a frozen expert, the base, a deterministic "
            f"merge): its seeds repeat one run, so it is shown as that one run with a percentile bootstrap CI over "
            f"sample ids, not as a misleading ± 0.0 over identical seeds.\n"
            f"- **Avg** is the mean of the benchmark scores of "
            f"{', '.join(benchmark_label(t) for t in summary.avg_tasks) or '(none)'}; general-quality columns are "
            f"reported beside it, not averaged into it (as in the paper).\n"
            f"- **†** marks a difference to **{summary.reference}** that holds against both sources of variance "
            f"(an intersection-union test, so its level is {100 - level}%): (1) training: a paired t-test over "
            f"seeds of the per-seed difference (seed s of both methods shares the world and the artifacts built for "
            f"s; a one-run method is held constant, a one-sample test); (2) benchmark sampling: the paired bootstrap "
            f"over sample ids ({summary.n_resamples} resamples, seeded; all seeds of an id move together; Avg: "
            f"stratified by benchmark), as a Wald test with the bootstrap standard error. p = the larger of the two "
            f"p-values; with one seed only (2) is possible. The p-values are Holm-corrected across the "
            f"{summary.n_comparisons} comparisons of the main table (family-wise error {100 - level}%). "
            f"`tables/main.csv` has p_seeds, p_ids, p and p_holm per cell. The ± columns are CIs of the scores, "
            f"not of the differences: two overlapping intervals can still differ significantly (pairing).\n"
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


def _provenance_text(prov: dict) -> str:
    if not prov:
        return "Not recorded (meta.json predates provenance records).\n"
    packages = ", ".join(f"{k} {v}" for k, v in (prov.get("packages") or {}).items() if v)
    kernels = ", ".join(f"{k}={v}" for k, v in (prov.get("kernel_env") or {}).items()) or "none set"
    commit = prov.get("commit") or "unknown"
    return (f"- Commit: `{commit}`{' (with uncommitted changes)' if prov.get('dirty') else ''}\n"
            f"- Python {prov.get('python')}; {packages}\n"
            f"- torch threads: {prov.get('torch_threads')}; CPU kernels: {prov.get('torch_cpu_capability')}; "
            f"kernel environment: {kernels}\n"
            f"- CPU: {prov.get('cpu')} ({prov.get('cpu_count')} cores, {prov.get('machine')}); GPUs: "
            f"{', '.join(prov.get('gpus') or []) or 'none'}\n"
            "\nModels trained from scratch can turn a last-bit difference between CPU kernel sets into points of "
            "score: compare these lines first when two machines disagree.\n")


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
    if meta.method_notes:
        parts.append("Notes on rows:\n\n" + "".join(f"- **{m}**: {note}\n" for m, note in meta.method_notes.items()
                                                     if m in summary.methods))
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
    parts.append(f"## Provenance\n\n{_provenance_text(meta.provenance)}")
    return "\n".join(parts)


RENDERED = ("tables", "plots", "report.md")   # what render_report writes; the rest of the folder is the sweep's data


def remove_rendered(sweep_dir: str | Path) -> list[str]:
    """Delete the tables, plots and report.md of an earlier render (returns the names removed): after new results
    are assembled without rendering, they would show numbers the folder's results.jsonl no longer holds."""
    removed = []
    for name in RENDERED:
        path = Path(sweep_dir) / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed


def render_report(sweep_dir: str | Path, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> Path:
    """Write `tables/`, `plots/` and `report.md` into the sweep directory; returns the report's path."""
    root = Path(sweep_dir)
    summary = summarize(load_sweep(root), confidence=confidence, n_resamples=n_resamples, seed=seed)
    tables = write_tables(summary, root / "tables")
    plots = write_plots(summary, root / "plots")
    path = root / "report.md"
    atomic_write_text(path, render_report_text(summary, plots, tables))
    return path
