"""Paper-shaped tables from a `SweepSummary`, as Markdown, LaTeX (booktabs) and CSV.

Main table: methods as rows (reference first, then ablations, baselines, experts), benchmarks as columns grouped
by domain, an Avg column (mean of the non-general benchmarks' primary scores), general-quality columns after it.
A cell reads "mean ± h": the score x100 with one decimal, h = half the width of its 95% CI (x100). The best mean of
a column (after rounding) is bold; † marks a cell whose paired-bootstrap CI of the difference to the reference
method excludes 0. The CSV holds the raw fractions and exact CI bounds.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..cache import atomic_write_text
from .summary import AVG, SweepSummary

BENCHMARK_LABELS = {"gsm8k": "GSM8K", "math500": "MATH500", "mbpp": "MBPP", "humaneval": "HumanEval",
                    "ifeval": "IFEval"}
DOMAIN_LABELS = {"math": "Math", "code": "Code", "if": "IF", "mixed": "Mixed", "general": "General"}
MARKER_MD, MARKER_TEX = "†", r"$^{\dagger}$"
ONE_RUN_MD, ONE_RUN_TEX = "‡", r"$^{\ddagger}$"
MISSING_MD, MISSING_TEX = "–", "--"


def benchmark_label(task: str) -> str:
    return BENCHMARK_LABELS.get(task, task)


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def latex_escape(text: str) -> str:
    out = []
    for ch in text:
        if ch in "&%$#_{}":
            out.append("\\" + ch)
        elif ch == "~":
            out.append(r"\textasciitilde{}")
        elif ch == "^":
            out.append(r"\textasciicircum{}")
        elif ch == "\\":
            out.append(r"\textbackslash{}")
        else:
            out.append(ch)
    return "".join(out)


@dataclass(frozen=True)
class Cell:
    """A formatted table cell: `value` is None for a missing entry."""

    value: str | None
    ci: str | None = None
    bold: bool = False
    marker: bool = False
    one_run: bool = False

    def markdown(self) -> str:
        if self.value is None:
            return MISSING_MD
        text = f"**{self.value}**" if self.bold else self.value
        if self.ci is not None:
            text += f" ± {self.ci}"
        return text + (ONE_RUN_MD if self.one_run else "") + (MARKER_MD if self.marker else "")

    def latex(self) -> str:
        if self.value is None:
            return MISSING_TEX
        text = rf"\textbf{{{self.value}}}" if self.bold else self.value
        if self.ci is not None:
            text += rf"$\pm${self.ci}"
        return text + (ONE_RUN_TEX if self.one_run else "") + (MARKER_TEX if self.marker else "")


@dataclass
class Grid:
    """Rows of cells under a header; `row_groups` draws a LaTeX \\midrule where the group changes;
    `header_groups` [(label, span)] adds a spanning header row above the first data column onwards."""

    header: list[str]
    rows: list[list[str | Cell]]
    row_groups: list[str | None] = field(default_factory=list)
    header_groups: list[tuple[str, int]] = field(default_factory=list)

    def to_markdown(self) -> str:
        lines = ["| " + " | ".join(self.header) + " |",
                 "|" + "|".join([":---"] + [":---:"] * (len(self.header) - 1)) + "|"]
        for row in self.rows:
            lines.append("| " + " | ".join(c.markdown() if isinstance(c, Cell) else c for c in row) + " |")
        return "\n".join(lines) + "\n"

    def to_latex(self, comment: str = "") -> str:
        lines = [f"% {comment}"] if comment else []
        lines += [r"\begin{tabular}{l" + "c" * (len(self.header) - 1) + "}", r"\toprule"]
        if self.header_groups:
            parts, rules, col = [""], [], 2
            for label, span in self.header_groups:
                parts.append(rf"\multicolumn{{{span}}}{{c}}{{{latex_escape(label)}}}" if label else "")
                if label:
                    rules.append(rf"\cmidrule(lr){{{col}-{col + span - 1}}}")
                parts += [""] * (span - 1)
                col += span
            lines.append(" & ".join(parts) + r" \\")
            lines.append(" ".join(rules))
        lines.append(" & ".join(latex_escape(h) for h in self.header) + r" \\")
        lines.append(r"\midrule")
        previous = self.row_groups[0] if self.row_groups else None
        for i, row in enumerate(self.rows):
            group = self.row_groups[i] if self.row_groups else None
            if i and group != previous:
                lines.append(r"\midrule")
            previous = group
            lines.append(" & ".join(c.latex() if isinstance(c, Cell) else latex_escape(c) for c in row) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines) + "\n"


def _csv(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    return buf.getvalue()


def _num(x: float | None) -> str | None:
    return None if x is None or math.isnan(x) else f"{x:.6f}"


def _ci_text(low: float, high: float) -> str | None:
    return None if math.isnan(low) or math.isnan(high) else pct((high - low) / 2)


def _best(values: dict[str, float]) -> set[str]:
    """Methods whose rounded (as displayed) score is the column's maximum."""
    if not values:
        return set()
    shown = {m: round(100 * v, 1) for m, v in values.items()}
    top = max(shown.values())
    return {m for m, v in shown.items() if v == top}


def main_grid(summary: SweepSummary) -> Grid:
    columns = summary.columns()
    best = {c: _best({m: summary.scores[(m, c)].interval.mean for m in summary.methods
                      if (m, c) in summary.scores}) for c in columns}
    rows: list[list[str | Cell]] = []
    for m in summary.methods:
        row: list[str | Cell] = [m]
        for c in columns:
            score = summary.scores.get((m, c))
            if score is None:
                row.append(Cell(None))
                continue
            iv = score.interval
            row.append(Cell(pct(iv.mean), _ci_text(iv.low, iv.high), bold=m in best[c], marker=score.significant,
                            one_run=score.one_run))
        rows.append(row)
    header_groups: list[tuple[str, int]] = []
    for c in columns:
        label = "" if c == AVG else DOMAIN_LABELS[summary.domains[c]]
        if header_groups and header_groups[-1][0] == label and label:
            header_groups[-1] = (label, header_groups[-1][1] + 1)
        else:
            header_groups.append((label, 1))
    return Grid(header=["Method"] + [c if c == AVG else benchmark_label(c) for c in columns], rows=rows,
                row_groups=[summary.groups.get(m) for m in summary.methods], header_groups=header_groups)


def main_caption(summary: SweepSummary) -> str:
    seeds = summary.n_seeds
    level = int(100 * summary.confidence)
    ci = (f"{level}% t-interval over {seeds} seeds" if seeds > 1 else
          f"{level}% percentile bootstrap over samples ({summary.n_resamples} resamples)")
    avg = ", ".join(benchmark_label(t) for t in summary.avg_tasks)
    one_run = any(sc.one_run for sc in summary.scores.values())
    test = ("a t-test over seeds (training variance) and the paired bootstrap over sample ids (benchmark sampling) "
            "both reject" if seeds > 1 else "the paired bootstrap over sample ids rejects")
    return (f"Scores x100, mean ± half-width of the {ci}"
            + (f"; ‡: the method does not depend on the seed, one run with a {level}% bootstrap CI over sample ids"
               if one_run else "")
            + f". Avg = mean of {avg}. Bold: best in column. †: different from {summary.reference} at the "
            f"{100 - level}% level: {test}, Holm-corrected over the table's {summary.n_comparisons} comparisons.")


def main_table_markdown(summary: SweepSummary) -> str:
    return main_grid(summary).to_markdown()


def main_table_latex(summary: SweepSummary) -> str:
    caption = (main_caption(summary).replace("±", "+/-").replace("†", "dagger")
               .replace("‡", "double dagger"))  # keep the .tex file ASCII
    return main_grid(summary).to_latex(comment=f"fr_bench sweep '{summary.sweep.name}'. {caption}")


def main_table_csv(summary: SweepSummary) -> str:
    header = ["method", "method_group", "benchmark", "domain", "mean", "ci_low", "ci_high", "ci_kind", "n",
              "diff_vs_reference", "diff_low", "diff_high", "p_ids", "p_seeds", "seed_test", "p", "p_holm",
              "significant", "one_run"]
    rows = []
    for m in summary.methods:
        for c in summary.columns():
            score = summary.scores.get((m, c))
            if score is None:
                continue
            iv, d, t = score.interval, score.vs_reference, score.test
            seeds = t.seeds if t is not None and t.seed_level else None
            rows.append([m, summary.groups.get(m), c, "" if c == AVG else summary.domains[c], _num(iv.mean),
                         _num(iv.low), _num(iv.high), iv.kind, iv.n, _num(d.diff) if d else None,
                         _num(d.low) if d else None, _num(d.high) if d else None,
                         _num(t.p_ids) if t else None, _num(seeds.p) if seeds else None,
                         seeds.kind if seeds else None, _num(t.p) if t else None,
                         _num(t.p_adjusted) if t else None, t.significant if t else None, score.one_run])
    return _csv(header, rows)


def metrics_grid(summary: SweepSummary, task: str) -> Grid:
    names = summary.metric_names[task]
    best = {k: _best({m: summary.metric_scores[(m, task, k)].mean for m in summary.methods
                      if (m, task, k) in summary.metric_scores}) for k in names}
    rows: list[list[str | Cell]] = []
    groups = []
    for m in summary.methods:
        if not any((m, task, k) in summary.metric_scores for k in names):
            continue
        row: list[str | Cell] = [m]
        for k in names:
            iv = summary.metric_scores.get((m, task, k))
            row.append(Cell(None) if iv is None else Cell(pct(iv.mean), _ci_text(iv.low, iv.high), bold=m in best[k]))
        rows.append(row)
        groups.append(summary.groups.get(m))
    return Grid(header=["Method"] + names, rows=rows, row_groups=groups)


def metrics_markdown(summary: SweepSummary) -> str:
    parts = []
    for task in summary.tasks:
        parts.append(f"### {benchmark_label(task)} ({summary.domains[task]}; primary metric: "
                     f"{summary.metric_names[task][0]})\n\n{metrics_grid(summary, task).to_markdown()}")
    return "\n".join(parts)


def metrics_latex(summary: SweepSummary) -> str:
    return "\n".join(metrics_grid(summary, t).to_latex(comment=f"{benchmark_label(t)}: all metrics, x100, "
                                                               f"mean +/- CI half-width") for t in summary.tasks)


def metrics_csv(summary: SweepSummary) -> str:
    rows = [[m, t, k, _num(iv.mean), _num(iv.low), _num(iv.high), iv.kind, iv.n]
            for t in summary.tasks for m in summary.methods for k in summary.metric_names[t]
            if (iv := summary.metric_scores.get((m, t, k))) is not None]
    return _csv(["method", "benchmark", "metric", "mean", "ci_low", "ci_high", "ci_kind", "n"], rows)


def routing_grid(summary: SweepSummary) -> Grid:
    rows: list[list[str | Cell]] = []
    groups = []
    for m in summary.methods:
        for t in summary.tasks:
            share = summary.routing.get((m, t))
            if share is None:
                continue
            rows.append([m, benchmark_label(t), summary.domains[t], str(int(share.counts.sum()))]
                        + [Cell(pct(s)) for s in share.shares])
            groups.append(m)
    return Grid(header=["Method", "Benchmark", "Domain", "Tokens"] + [f"{e} %" for e in summary.expert_names],
                rows=rows, row_groups=groups)


def routing_csv(summary: SweepSummary) -> str:
    rows = [[m, t, summary.domains[t], e, int(share.counts[i]), _num(float(share.shares[i]))]
            for (m, t), share in summary.routing.items() for i, e in enumerate(summary.expert_names)]
    return _csv(["method", "benchmark", "domain", "expert", "tokens", "share"], rows)


def cost_grid(summary: SweepSummary) -> Grid:
    relative = summary.relative_cost()
    rows: list[list[str | Cell]] = []
    for m in summary.methods:
        avg = summary.scores.get((m, AVG))
        cost = summary.cost_per_sample[m]
        rows.append([m, summary.groups.get(m) or "", Cell(pct(avg.interval.mean) if avg else None),
                     Cell(None if math.isnan(cost) else f"{cost:.1f}"),
                     Cell(f"{relative[m]:.2f}" if m in relative else None), Cell(f"{summary.wall_s[m]:.1f}")])
    return Grid(header=["Method", "Group", "Avg", "Decode tokens / sample", "x single expert", "Wall s"], rows=rows,
                row_groups=[summary.groups.get(m) for m in summary.methods])


def cost_csv(summary: SweepSummary) -> str:
    relative = summary.relative_cost()
    rows = [[m, summary.groups.get(m), _num(summary.scores[(m, AVG)].interval.mean) if (m, AVG) in summary.scores
             else None, _num(summary.cost_per_sample[m]), _num(relative.get(m)), _num(summary.wall_s[m])]
            for m in summary.methods]
    return _csv(["method", "method_group", "avg", "cost_tokens_per_sample", "cost_vs_single_expert", "wall_s"], rows)


def write_tables(summary: SweepSummary, out_dir: str | Path) -> dict[str, list[str]]:
    """Render every table into `out_dir` (md, tex, csv); returns {table name: [file names]}."""
    out = Path(out_dir)
    files = {
        "main": {"main.md": main_table_markdown(summary), "main.tex": main_table_latex(summary),
                 "main.csv": main_table_csv(summary)},
        "metrics": {"metrics.md": metrics_markdown(summary), "metrics.tex": metrics_latex(summary),
                    "metrics.csv": metrics_csv(summary)},
        "cost": {"cost.md": cost_grid(summary).to_markdown(), "cost.tex": cost_grid(summary).to_latex(),
                 "cost.csv": cost_csv(summary)},
    }
    if summary.routing:
        grid = routing_grid(summary)
        files["routing"] = {"routing_share.md": grid.to_markdown(), "routing_share.tex": grid.to_latex(),
                            "routing_share.csv": routing_csv(summary)}
    for group in files.values():
        for name, text in group.items():
            atomic_write_text(out / name, text)
    return {k: list(v) for k, v in files.items()}
