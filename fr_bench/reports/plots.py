"""Paper-style figures from a `SweepSummary` (matplotlib, Agg backend); each is saved as PNG and PDF.

Colours are fixed per method (table order) and per expert (meta order), so a method or an expert looks the same in
every figure of a report.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402
from matplotlib.transforms import ScaledTranslation  # noqa: E402

from .summary import AVG, SweepSummary  # noqa: E402
from .tables import DOMAIN_LABELS, benchmark_label  # noqa: E402

# Okabe-Ito (colour-blind safe), then Paul Tol's muted scheme for longer method lists.
METHOD_PALETTE = ["#D55E00", "#0072B2", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000",
                  "#882255", "#44AA99", "#999933", "#332288", "#AA4499", "#DDCC77", "#117733", "#88CCEE"]
EXPERT_PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C"]
STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8, "xtick.labelsize": 8,
         "ytick.labelsize": 8, "axes.spines.top": False, "axes.spines.right": False, "pdf.fonttype": 42,
         "savefig.dpi": 200, "font.family": "DejaVu Sans"}
MONO_ADVANCE = 0.602  # DejaVu Sans Mono advance width, in em


def method_colors(methods: list[str]) -> dict[str, Any]:
    return {m: METHOD_PALETTE[i % len(METHOD_PALETTE)] for i, m in enumerate(methods)}


def expert_colors(experts: list[str]) -> dict[str, Any]:
    return {e: EXPERT_PALETTE[i % len(EXPERT_PALETTE)] for i, e in enumerate(experts)}


def _save(fig: plt.Figure, stem: Path, tight: bool = True) -> list[Path]:
    """PNG and PDF; the PDF without a creation date, so re-rendering the same sweep rewrites the same bytes."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        path = stem.with_suffix(f".{ext}")
        fig.savefig(path, bbox_inches="tight" if tight else None,
                    metadata={"CreationDate": None} if ext == "pdf" else None)
        paths.append(path)
    plt.close(fig)
    return paths


def _yerr(mean: float, low: float, high: float, clip: tuple[float, float] | None = (0.0, 1.0)) -> tuple[float, float]:
    if math.isnan(low) or math.isnan(high):
        return 0.0, 0.0
    if clip is not None:
        low, high = max(low, clip[0]), min(high, clip[1])
    return 100 * max(mean - low, 0.0), 100 * max(high - mean, 0.0)


def plot_scores(summary: SweepSummary, stem: Path) -> list[Path]:
    """Grouped bars: benchmarks (and Avg) on x, one bar per method, CI error bars (clipped to [0, 100]);
    † above a bar whose paired difference to the reference is significant."""
    columns, methods = summary.columns(), summary.methods
    colors = method_colors(methods)
    width = 0.8 / len(methods)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(min(11.0, max(6.0, 0.14 * len(columns) * len(methods) + 1.5)), 3.2))
        x = np.arange(len(columns))
        for i, m in enumerate(methods):
            means, errs, sig = [], [[], []], []
            for c in columns:
                score = summary.scores.get((m, c))
                if score is None:
                    means.append(np.nan)
                    errs[0].append(0.0)
                    errs[1].append(0.0)
                    sig.append(False)
                    continue
                iv = score.interval
                lo, hi = _yerr(iv.mean, iv.low, iv.high)
                means.append(100 * iv.mean)
                errs[0].append(lo)
                errs[1].append(hi)
                sig.append(score.significant)
            pos = x - 0.4 + width * (i + 0.5)
            ax.bar(pos, means, width, yerr=errs, color=colors[m], label=m, capsize=1.5,
                   error_kw={"elinewidth": 0.7, "capthick": 0.7}, edgecolor="white", linewidth=0.4)
            for p, mean, hi, s in zip(pos, means, errs[1], sig):
                if s:
                    ax.text(p, mean + hi + 1, "†", ha="center", va="bottom", fontsize=7)
        if AVG in columns:
            ax.axvline(columns.index(AVG) - 0.5, color="0.7", linewidth=0.6, linestyle=":")
            if columns.index(AVG) < len(columns) - 1:
                ax.axvline(columns.index(AVG) + 0.5, color="0.7", linewidth=0.6, linestyle=":")
        ax.set_xticks(x, [benchmark_label(c) for c in columns])
        ax.set_ylabel("Score (x100)")
        ax.set_ylim(0, 105)
        ax.grid(axis="y", linewidth=0.4, alpha=0.5)
        ax.set_axisbelow(True)
        ax.legend(ncol=min(len(methods), 6), loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
        ax.set_title(f"{summary.sweep.name}: primary metric per benchmark")
        fig.tight_layout()
        return _save(fig, stem)


def plot_ablation_deltas(summary: SweepSummary, stem: Path) -> list[Path]:
    """Reference minus each ablation per benchmark (points x100) with the paired bootstrap CI; [] without
    ablations."""
    ablations = [m for m in summary.methods if summary.groups.get(m) == "ablation"]
    columns = summary.columns()
    if not ablations:
        return []
    colors = method_colors(summary.methods)
    width = 0.8 / len(ablations)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(min(10.0, max(5.0, 0.3 * len(columns) * len(ablations) + 1.5)), 3.0))
        x = np.arange(len(columns))
        for i, m in enumerate(ablations):
            deltas, errs = [], [[], []]
            for c in columns:
                score = summary.scores.get((m, c))
                d = score.vs_reference if score else None
                if d is None:
                    deltas.append(np.nan)
                    errs[0].append(0.0)
                    errs[1].append(0.0)
                    continue
                delta = -d.diff  # reference - ablation
                deltas.append(100 * delta)
                errs[0].append(100 * max(delta - (-d.high), 0.0))
                errs[1].append(100 * max(-d.low - delta, 0.0))
            ax.bar(x - 0.4 + width * (i + 0.5), deltas, width, yerr=errs, color=colors[m], label=m, capsize=2,
                   error_kw={"elinewidth": 0.8})
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_xticks(x, [benchmark_label(c) for c in columns])
        ax.set_ylabel(f"{summary.reference} − ablation (points)")
        ax.grid(axis="y", linewidth=0.4, alpha=0.5)
        ax.set_axisbelow(True)
        ax.legend(frameon=False, ncol=min(len(ablations), 4))
        ax.set_title("Ablations: full method minus ablated variant (> 0: the removed part helps)")
        fig.tight_layout()
        return _save(fig, stem)


def plot_routing_share(summary: SweepSummary, stem: Path) -> list[Path]:
    """Stacked bars of the share of generated tokens routed to each expert, per task, one panel per routed
    method; [] when no method recorded expert choices."""
    routed = [m for m in summary.methods if any((m, t) in summary.routing for t in summary.tasks)]
    if not routed:
        return []
    experts = summary.expert_names
    colors = expert_colors(experts)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(routed), figsize=(max(3.2, 0.55 * len(summary.tasks) + 1) * len(routed),
                                                          3.0), sharey=True, squeeze=False)
        for ax, m in zip(axes[0], routed):
            tasks = [t for t in summary.tasks if (m, t) in summary.routing]
            shares = np.array([summary.routing[(m, t)].shares for t in tasks]) * 100
            bottom = np.zeros(len(tasks))
            for j, e in enumerate(experts):
                ax.bar(range(len(tasks)), shares[:, j], 0.7, bottom=bottom, color=colors[e], label=e,
                       edgecolor="white", linewidth=0.4)
                for k, (b, s) in enumerate(zip(bottom, shares[:, j])):
                    if s >= 8:
                        ax.text(k, b + s / 2, f"{s:.0f}", ha="center", va="center", fontsize=7, color="white")
                bottom += shares[:, j]
            ax.set_xticks(range(len(tasks)), [f"{benchmark_label(t)}\n({DOMAIN_LABELS[summary.domains[t]]})"
                                              for t in tasks], rotation=0)
            ax.set_title(m)
            ax.set_ylim(0, 100)
        axes[0][0].set_ylabel("Generated tokens (%)")
        handles = [Patch(color=colors[e], label=e) for e in experts]
        fig.legend(handles=handles, title="Expert", loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
        fig.tight_layout()
        return _save(fig, stem)


def routing_examples(summary: SweepSummary, per_domain: int = 2) -> tuple[str, list[tuple[str, dict]]]:
    """Pick the routed method (the reference if routed) and up to `per_domain` samples per domain that have
    tokens and expert choices, preferring samples that switch experts, then by id (deterministic)."""
    routed = [m for m in summary.methods if any((m, t) in summary.routing for t in summary.tasks)]
    if not routed:
        return "", []
    method = summary.reference if summary.reference in routed else routed[0]
    picked: list[tuple[str, dict]] = []
    for domain in dict.fromkeys(summary.domains[t] for t in summary.tasks):
        candidates = []
        for t in (t for t in summary.tasks if summary.domains[t] == domain):
            rows = summary.sweep.rows(method, t)
            samples = summary.sweep.samples(method, t, rows[0].seed) if rows else None
            for s in samples or []:
                if s.get("tokens") and s.get("expert_choices") and len(s["tokens"]) == len(s["expert_choices"]):
                    candidates.append((-len(set(s["expert_choices"])), str(s["id"]), t, s))
        candidates.sort(key=lambda c: c[:2])
        picked += [(t, s) for _, _, t, s in candidates[:per_domain]]
    return method, picked


def _token_lines(tokens: list[str], choices: list[int], width: int) -> list[list[tuple[str, int]]]:
    """Wrap tokens into lines of at most `width` characters; newlines end a line and show as ↵."""
    lines: list[list[tuple[str, int]]] = [[]]
    used = 0
    for tok, e in zip(tokens, choices):
        pieces = tok.replace("\t", "→").split("\n")
        for k, piece in enumerate(pieces):
            last = k == len(pieces) - 1
            text = piece if last else piece + "↵"
            while text:
                room = width - used
                if room <= 0 or (len(text) > room and used > 0 and len(text) <= width):
                    lines.append([])
                    used = 0
                    continue
                lines[-1].append((text[:room], e))
                used += len(text[:room])
                text = text[room:]
            if not last:
                lines.append([])
                used = 0
    return lines


def plot_routing_map(summary: SweepSummary, stem: Path, per_domain: int = 2, width: int = 88,
                     max_tokens: int = 160) -> list[Path]:
    """Example outputs with every token on the colour of the expert that produced it; [] without routed
    samples that carry tokens."""
    method, examples = routing_examples(summary, per_domain)
    if not examples:
        return []
    experts = summary.expert_names
    colors = expert_colors(experts)
    fontsize = 8.0
    char_w, line_h = MONO_ADVANCE * fontsize / 72, 1.55 * fontsize / 72
    # Layout in (character, line) units; the figure is sized so one unit is one monospace character.
    items: list[tuple[str, Any]] = [("legend", None)]
    for task, s in examples:
        tokens, choices = list(s["tokens"]), list(s["expert_choices"])
        cut = len(tokens) > max_tokens
        ok = "correct" if s.get("correct") else "wrong"
        items.append(("header", f"{benchmark_label(task)} ({DOMAIN_LABELS[summary.domains[task]]}) · id {s['id']}"
                                f" · {ok}" + (f" · first {max_tokens} of {len(tokens)} tokens" if cut else "")))
        for line in _token_lines(tokens[:max_tokens], choices[:max_tokens], width):
            items.append(("tokens", line))
        items.append(("gap", None))
    n_lines = len(items)
    with plt.rc_context(STYLE):
        fig = plt.figure(figsize=((width + 2) * char_w, (n_lines + 1) * line_h))
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_xlim(-1, width + 1)
        ax.set_ylim(n_lines + 0.5, -0.5)
        ax.axis("off")
        for y, (kind, payload) in enumerate(items):
            if kind == "legend":
                title = f"{method}: expert per generated token"
                ax.text(0, y, title, fontsize=fontsize, va="center", family="DejaVu Sans Mono", fontweight="bold",
                        parse_math=False)
                x = len(title) + 2.0
                for e in experts:
                    ax.add_patch(Rectangle((x, y - 0.4), len(e) + 1, 0.8, color=colors[e], alpha=0.45, lw=0))
                    ax.text(x + 0.5, y, e, fontsize=fontsize, va="center", family="DejaVu Sans Mono",
                            parse_math=False)
                    x += len(e) + 2.5
            elif kind == "header":
                ax.text(0, y, payload, fontsize=fontsize, va="center", family="DejaVu Sans", fontstyle="italic",
                        color="0.25", parse_math=False)
            elif kind == "tokens":
                x = 0.0
                for text, e in payload:
                    color = colors[experts[e]] if 0 <= e < len(experts) else "0.8"
                    # a hairline gap between boxes shows token boundaries within one expert's run
                    ax.add_patch(Rectangle((x + 0.04, y - 0.45), len(text) - 0.08, 0.9, color=color, alpha=0.45,
                                           lw=0))
                    ax.text(x, y, text, fontsize=fontsize, va="center", ha="left", family="DejaVu Sans Mono",
                            parse_math=False)
                    x += len(text)
        return _save(fig, stem, tight=False)


def _spread_labels(points: list[tuple[str, float, float]], min_gap: float | None = None) -> list[float]:
    """Label heights for (name, x, y) points: labels of points at about the same x are pushed apart vertically
    so they do not overlap (greedy, from the top)."""
    ys = [y for _, _, y in points]
    gap = min_gap if min_gap is not None else 0.045 * max(max(ys) - min(ys), 10.0)
    order = sorted(range(len(points)), key=lambda i: -points[i][2])
    placed: list[tuple[float, float]] = []  # (x, label y)
    out = [0.0] * len(points)
    for i in order:
        _, x, y = points[i]
        label = y
        for px, py in placed:
            if abs(px - x) <= 0.08 * max(abs(x), abs(px), 1e-9) and label > py - gap:
                label = py - gap
        placed.append((x, label))
        out[i] = label
    return out


def plot_quality_vs_cost(summary: SweepSummary, stem: Path) -> list[Path]:
    """Avg score against decode cost, one labelled point per method; x is relative to a single expert when the
    sweep has experts, else decode tokens per sample. [] when no method has an Avg."""
    relative = summary.relative_cost()
    cost = relative or summary.cost_per_sample
    methods = [m for m in summary.methods if (m, AVG) in summary.scores and not math.isnan(cost.get(m, math.nan))]
    if not methods:
        return []
    colors = method_colors(summary.methods)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(4.6, 3.4))
        points = []
        for m in methods:
            iv = summary.scores[(m, AVG)].interval
            lo, hi = _yerr(iv.mean, iv.low, iv.high)
            points.append((m, cost[m], 100 * iv.mean))
            ax.errorbar(cost[m], 100 * iv.mean, yerr=[[lo], [hi]], fmt="o", color=colors[m], markersize=6,
                        capsize=2, elinewidth=0.8, markeredgecolor="white", markeredgewidth=0.6)
        xs = [x for _, x, _ in points]
        labels = _spread_labels(points)
        beside = ax.transData + ScaledTranslation(6 / 72, 0, fig.dpi_scale_trans)  # 6 pt right of the point
        for (m, x, y), label_y in zip(points, labels):
            ax.annotate(m, (x, y), xytext=(x, label_y), textcoords=beside, fontsize=8, color=colors[m],
                        va="center", **({} if label_y == y else
                                        {"arrowprops": {"arrowstyle": "-", "color": "0.6", "lw": 0.5}}))
        low, high = ax.get_ylim()
        ax.set_ylim(min(low, min(labels) - 1.0), high)
        if min(xs) > 0 and max(xs) / min(xs) > 4:
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("Decode cost (x single expert)" if relative else "Decode tokens per sample")
        ax.set_ylabel(f"Avg score (x100, {', '.join(benchmark_label(t) for t in summary.avg_tasks)})"
                      if len(summary.avg_tasks) <= 3 else "Avg score (x100)")
        ax.grid(linewidth=0.4, alpha=0.5)
        ax.set_title("Quality vs decode cost")
        fig.tight_layout()
        return _save(fig, stem)


PLOTS = {"scores": plot_scores, "ablation_deltas": plot_ablation_deltas, "routing_share": plot_routing_share,
         "routing_map": plot_routing_map, "quality_vs_cost": plot_quality_vs_cost}


def write_plots(summary: SweepSummary, out_dir: str | Path) -> dict[str, list[Path]]:
    """Render every figure that the sweep's data supports into `out_dir`; {figure name: [png, pdf]}."""
    out = Path(out_dir)
    made = {}
    for name, fn in PLOTS.items():
        paths = fn(summary, out / name)
        if paths:
            made[name] = paths
    return made
