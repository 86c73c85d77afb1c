"""The smoke sweep end to end: every table and plot, warm reruns, kill-and-resume, determinism, the Ray executor and
local worker processes (equal results, failures named).

One uninterrupted cold run (module fixture) is the reference the other runs are compared against.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fr_bench.sweep.__main__ import main as sweep_main
from fr_bench.sweep.executor import TaskError

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "experiments" / "smoke.yaml")


def metrics_of(out: Path) -> dict[tuple[str, str, int], dict]:
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return {(r["method"], r["task"], r["seed"]): r["metrics"] for r in rows}


def cells_in(cache: Path) -> dict[str, float]:
    """Finished evaluation cells -> mtime of their result file."""
    return {p.parent.name: p.stat().st_mtime_ns for p in (cache / "cells").glob("*/result.json")
            if (p.parent / ".complete").exists()}


def run(cache: Path, out: Path, *args: str) -> int:
    os.environ["FR_BENCH_CACHE"] = str(cache)
    return sweep_main([SMOKE, "--out", str(out), *args])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A cold, uninterrupted smoke sweep in a fresh cache."""
    root = tmp_path_factory.mktemp("smoke_ref")
    old = os.environ.get("FR_BENCH_CACHE")
    assert run(root / "cache", root / "out") == 0
    yield root
    if old is not None:
        os.environ["FR_BENCH_CACHE"] = old


def test_smoke_sweep_writes_every_table_and_plot(reference):
    out = reference / "out"
    from fr_bench.sweep.config import SweepConfig
    from fr_bench.config import load_config

    cfg = load_config(SweepConfig, SMOKE)
    got = metrics_of(out)
    from fr_bench.sweep.worlds import MICRO_TASKS

    assert len(got) == len(cfg.methods) * len(MICRO_TASKS) * len(cfg.seeds)
    for method in cfg.methods:
        for seed in cfg.seeds:
            for task in MICRO_TASKS:
                samples = out / "samples" / method / task / f"seed{seed}.jsonl"
                assert samples.is_file() and samples.read_text().strip(), samples
    for ext in ("md", "tex", "csv"):
        assert list((out / "tables").glob(f"*.{ext}")), ext
    pngs = {p.stem for p in (out / "plots").glob("*.png")}
    pdfs = {p.stem for p in (out / "plots").glob("*.pdf")}
    assert pngs == pdfs and len(pngs) >= 5, pngs
    report = (out / "report.md").read_text()
    assert "fusionroute" in report and "![" in report
    routed = [json.loads(line) for line in (out / "samples" / "fusionroute" / "micro_math" / "seed0.jsonl")
              .read_text().splitlines()]
    assert all(len(r["expert_choices"]) == len(r["tokens"]) for r in routed)


def test_warm_rerun_recomputes_nothing(reference, tmp_path):
    before = cells_in(reference / "cache")
    assert run(reference / "cache", tmp_path / "out", "--no-report") == 0
    assert cells_in(reference / "cache") == before
    assert metrics_of(tmp_path / "out") == metrics_of(reference / "out")


def test_no_report_removes_an_earlier_render_that_its_results_would_contradict(reference, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(reference / "out", out)
    assert (out / "report.md").is_file() and (out / "tables").is_dir() and (out / "plots").is_dir()
    assert run(reference / "cache", out, "--no-report", "--only", "expert_math/micro_math/seed0") == 0
    assert not any((out / name).exists() for name in ("report.md", "tables", "plots"))
    assert metrics_of(out) == metrics_of(reference / "out")          # the data files are all written
    assert f"python -m fr_bench.reports {out}" in capsys.readouterr().out


def test_kill_and_resume_matches_uninterrupted_run(reference, tmp_path):
    """SIGKILL a cold sweep after some cells finished; the rerun recomputes none of them and ends where the
    uninterrupted (and independently trained: same seeds) reference ended."""
    cache = tmp_path / "cache"
    env = {**os.environ, "FR_BENCH_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "fr_bench.sweep", SMOKE, "--out", str(tmp_path / "out"),
                             "--no-report"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=REPO)
    deadline = time.time() + 600
    while time.time() < deadline and len(cells_in(cache)) < 3 and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, "the sweep ended before it could be killed; make smoke.yaml's cells slower"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = cells_in(cache)
    assert finished, "no cell had finished before the kill"
    assert run(cache, tmp_path / "out") == 0
    after = cells_in(cache)
    assert {k: after[k] for k in finished} == finished          # no finished cell recomputed
    for path in (tmp_path / "out").rglob("*.json*"):             # no corrupt result file
        text = path.read_text()
        [json.loads(line) for line in text.splitlines() if line] if path.suffix == ".jsonl" else json.loads(text)
    assert metrics_of(tmp_path / "out") == metrics_of(reference / "out")  # and determinism across cold runs


def world_only(reference: Path, tmp_path: Path) -> Path:
    """A copy of the reference cache without its artifacts and cells: the next run builds and evaluates them."""
    cache = tmp_path / "cache"
    shutil.copytree(reference / "cache", cache)
    shutil.rmtree(cache / "artifacts")
    shutil.rmtree(cache / "cells")
    return cache


def test_ray_executor_gives_the_same_results(reference, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(reference / "cache", cache)                  # reuse most trained artifacts: cells run on Ray,
    shutil.rmtree(cache / "cells")
    for info in (cache / "artifacts").glob("*/artifact.json"):  # and FusionRoute's chain for seed 0 rebuilds there
        meta = json.loads(info.read_text())
        if meta["seed"] == 0 and meta["name"] in ("router_sft", "pref_pairs", "router_cdpo"):
            shutil.rmtree(info.parent)
    assert run(cache, tmp_path / "out", "--no-report", "executor.kind=ray", "executor.num_cpus_per_cell=1") == 0
    assert metrics_of(tmp_path / "out") == metrics_of(reference / "out")


def test_two_worker_processes_name_failures_keep_finished_work_and_match_the_serial_run(reference, tmp_path):
    """On two workers, first a run whose prompt router cannot load its encoder: the error names the artifact, and
    merge_dare, built meanwhile by the other worker (maybe also the dare cell after it), stays cached. Then the whole
    smoke sweep on two workers resumes from there and ends where the serial reference ended."""
    cache = world_only(reference, tmp_path)
    with pytest.raises(TaskError, match=r"artifact prompt_router\[seed=0\] failed: .*nonexistent"):
        run(cache, tmp_path / "out", "--no-report", "executor.workers=2",
            "artifacts.prompt_router.encoder=/nonexistent/encoder",
            "--only", "seq_prompt_router/micro_math/seed0,dare/micro_math/seed0")
    kept = {p: p.stat().st_mtime_ns for p in (cache / "artifacts").glob("*/artifact.json")}
    assert [json.loads(p.read_text())["name"] for p in kept] == ["merge_dare"]
    assert {json.loads(p.read_text())["method"] for p in (cache / "cells").glob("*/result.json")} <= {"dare"}
    assert run(cache, tmp_path / "out", "--no-report", "executor.workers=2") == 0
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert metrics_of(tmp_path / "out") == metrics_of(reference / "out")


def test_logs_print_each_line_once_without_per_run_noise(reference, tmp_path):
    """A sweep on two workers that trains (router SFT) and evaluates: no Lightning line twice (once through
    Lightning's handler, once through the root's), no cloud-logging tip, no per-cell "Loading weights" bar."""
    cache = world_only(reference, tmp_path)
    env = {**os.environ, "FR_BENCH_CACHE": str(cache)}
    proc = subprocess.run([sys.executable, "-m", "fr_bench.sweep", SMOKE, "--out", str(tmp_path / "out"),
                           "--no-report", "executor.workers=2", "--only", "fusionroute_sft_only/micro_math/seed0"],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout + proc.stderr
    assert "building router_sft[seed=0]" in text                  # fr_bench's own INFO lines still show
    assert re.search(r"artifact router_sft\[seed=0\] done in \d+\.\d s", text)   # each task's wall time
    spec = importlib.util.spec_from_file_location("sweep_time", REPO / "benchmarks" / "sweep_time.py")
    sweep_time = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep_time)
    timeline = sweep_time.timeline(text)                           # benchmarks/sweep_time.py reads these lines
    assert set(timeline["worker_s_by_item"]) == {"artifact router_sft", "cells fusionroute_sft_only"}
    assert 0 < timeline["graph_worker_s"] and 0 < timeline["graph_busy_workers"] <= 2.05
    assert "artifacts: 100%" in text and "cells: 100%" in text     # one bar each, with tqdm's ETA
    assert "litlogger" not in text and "Loading weights" not in text and "Writing model shards" not in text
    messages = [line.split(": ", 1)[-1] for line in text.splitlines() if "lightning" in line or line.startswith("INFO:")]
    assert len(messages) == len(set(messages)), messages


def test_only_reruns_its_cells_and_the_report_keeps_every_finished_cell(reference, tmp_path):
    """--only chooses what runs, not what the report holds: re-running one cell into a report folder writes every
    finished cell of the sweep there, so a partial rerun never truncates a report."""
    cache = tmp_path / "cache"
    shutil.copytree(reference / "cache", cache)
    before = cells_in(cache)
    assert run(cache, tmp_path / "out", "--no-report", "--force", "--only", "expert_math/micro_math/seed0") == 0
    rerun = [k for k, t in cells_in(cache).items() if t != before[k]]
    assert len(rerun) == 1                                          # only the selected cell ran again
    assert metrics_of(tmp_path / "out") == metrics_of(reference / "out")


def test_seeded_world_trains_one_world_per_seed(reference, tmp_path):
    """world.seeded: seed 1 trains its own base and experts (on two worker processes), so even the frozen experts'
    and the deterministic merges' cells are per seed; seed 0's world is the unseeded one, with the same numbers."""
    cache = tmp_path / "cache"
    shutil.copytree(reference / "cache", cache)
    assert run(cache, tmp_path / "out", "world.seeded=true", "executor.workers=2", "--only",
               "expert_math/*,task_arithmetic/*") == 0
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert rows and not any("seeded" in r for r in rows)   # results.jsonl marks only the runs shared by all seeds
    assert len(list((cache / "micro_base").iterdir())) == 2
    ref, got = metrics_of(reference / "out"), metrics_of(tmp_path / "out")
    assert {k for k in got if k[2] == 0} and all(v == ref[k] for k, v in got.items() if k[2] == 0)
    assert {k[2] for k in got} == {0, 1}
