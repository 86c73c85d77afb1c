"""Figures and report.md rendered end to end from the hand-made sweep, through the CLI entry point."""
from __future__ import annotations

import re
import shutil
import struct
from pathlib import Path

import pytest

from fr_bench.reports.__main__ import main as reports_main
from fr_bench.reports.plots import _token_lines, plot_ablation_deltas, plot_routing_map, routing_examples
from fr_bench.reports.schema import load_sweep, write_results
from fr_bench.reports.summary import summarize
from fr_bench.reports.tables import write_tables

SWEEP = Path(__file__).resolve().parent / "data" / "sweep_small"
FIGURES = ("scores", "ablation_deltas", "quality_vs_cost", "routing_share", "routing_map")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("render") / "small"
    shutil.copytree(SWEEP, root)
    assert reports_main([str(root)]) == 0
    return root


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("name", FIGURES)
def test_figures_are_valid_png_and_pdf(rendered: Path, name: str) -> None:
    width, height = png_size(rendered / "plots" / f"{name}.png")
    assert width >= 400 and height >= 150
    assert (rendered / "plots" / f"{name}.png").stat().st_size > 10_000
    pdf = (rendered / "plots" / f"{name}.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and b"%%EOF" in pdf[-64:] and len(pdf) > 5_000
    assert b"/CreationDate" not in pdf           # re-rendering a committed report rewrites the same bytes


def test_report_ties_everything_together(rendered: Path) -> None:
    report = (rendered / "report.md").read_text()
    for heading in ("# Benchmark report: small", "## Main results", "### How to read the statistics",
                    "## Figures", "## Routing", "## General quality", "## All metrics per benchmark",
                    "## Decode cost"):
        assert heading in report
    assert "```yaml\nname: small\n" in report                                      # embedded config
    assert (rendered / "tables" / "main.md").read_text() in report                 # main table verbatim
    assert "| expert_math | **100.0** ± 0.0‡ |" in report                         # one run, CI over ids
    assert "Holm-corrected across the 12 comparisons" in report
    assert "## Provenance\n\nNot recorded" in report                              # meta.json of an older sweep
    for link in re.findall(r"\]\(((?:plots|tables)/[^)]+)\)", report):
        assert (rendered / link).is_file(), link
    assert {f"plots/{n}.png" for n in FIGURES} <= set(re.findall(r"\((plots/[^)]+\.png)\)", report))
    assert "micro_general task's own score (no judge)" in report


def test_rerender_is_deterministic(rendered: Path, tmp_path: Path) -> None:
    write_tables(summarize(load_sweep(rendered)), tmp_path)
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == \
        {p.name: p.read_text() for p in (rendered / "tables").iterdir()}


def test_cli_reports_a_bad_directory(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert reports_main([str(tmp_path)]) == 2
    assert "not a finished sweep" in capsys.readouterr().err


def test_token_lines_wrap_and_show_newlines() -> None:
    lines = _token_lines(["def", " f", "():\n", "  return", " 1234567890"], [1, 1, 2, 1, 0], width=10)
    # a token that would fit on a fresh line moves there; one longer than a line is split where it stands
    assert [[t for t, _ in line] for line in lines] == [["def", " f", "():↵"], ["  return", " 1"], ["234567890"]]
    assert [e for line in lines for _, e in line] == [1, 1, 2, 1, 0, 0]


def test_routing_examples_prefer_switching_outputs() -> None:
    s = summarize(load_sweep(SWEEP), n_resamples=10)
    method, examples = routing_examples(s, per_domain=1)
    assert method == "fusionroute"
    assert [(t, e["id"]) for t, e in examples] == [("micro_math", "q0"), ("micro_code", "q0"),
                                                   ("micro_general", "q0")]


def test_figures_without_data_are_skipped(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    shutil.copytree(SWEEP, root)
    shutil.rmtree(root / "samples")
    sweep = load_sweep(root)
    write_results(root, [r for r in sweep.results if r.method in ("fusionroute", "collab")])
    s = summarize(load_sweep(root), n_resamples=10)
    assert not s.routing
    assert plot_routing_map(s, tmp_path / "map") == []
    assert plot_ablation_deltas(s, tmp_path / "abl") == []
