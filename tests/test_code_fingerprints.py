"""Caches that know the code: an edit to a module recomputes exactly what that module's code produced, and the dry
run says why. Edits are made to copies (a copied project tree, a plug-in file in tmp), never to the real files."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fr_bench.artifacts import get_artifact
from fr_bench.cache import COMPLETE_MARKER
from fr_bench.codegraph import Fingerprinter, SourceIndex, code_changes
from fr_bench.config import load_config
from fr_bench.methods import get_method_class
from fr_bench.micro.build import build_micro_world
from fr_bench.plugins import load_plugins, resolve_plugins
from fr_bench.sweep import code_index
from fr_bench.sweep.cells import cell_dir
from fr_bench.sweep.config import SweepConfig
from fr_bench.sweep.plan import make_plan
from fr_bench.sweep.worlds import planned_tasks, world_keys

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for pkg in ("fr_bench", "baselines"):
        shutil.copytree(REPO / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _codes(root: Path) -> dict[str, dict[str, str]]:
    f = Fingerprinter(SourceIndex.of_project(root))
    arts = {a: f.code(get_artifact(a).builder) for a in ("router_sft", "pref_pairs", "router_cdpo", "finetuned",
                                                         "reward_model", "merge_task_arithmetic")}
    return {**arts, "micro_world": f.code(build_micro_world), "expert_cells": f.code(get_method_class("single_model")),
            "fusionroute_cells": f.code(get_method_class("fusionroute"))}


def test_editing_cdpo_touches_cdpo_routers_only(project: Path) -> None:
    before = _codes(project)
    cdpo = project / "fr_bench" / "training" / "cdpo.py"
    cdpo.write_text(cdpo.read_text() + "\n\nCDPO_EDIT = 1\n")
    after = _codes(project)
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {"router_cdpo", "finetuned"}   # (and, through their keys, everything downstream of them)
    assert code_changes(before["router_cdpo"], after["router_cdpo"]) == ["fr_bench/training/cdpo.py"]


def test_comments_whitespace_and_docstrings_do_not_count(project: Path) -> None:
    before = _codes(project)
    cdpo = project / "fr_bench" / "training" / "cdpo.py"
    text = cdpo.read_text()
    first = text.index('"""')
    cdpo.write_text(text[:first + 3] + "Edited docstring. " + text[first + 3:] + "\n# a comment\n\n\n")
    assert _codes(project) == before


POLICY = '''
from dataclasses import dataclass

from fr_bench.decoding.policies import register_policy


@register_policy("fp_test_policy")
@dataclass
class FpTestPolicy:
    router: int
    experts: list

    def step(self, run):
        out = run(self.experts[0])
        return out.logits, None
'''


def _plan(yaml: Path):
    cfg = load_config(SweepConfig, str(yaml))
    cfg.plugins = resolve_plugins(cfg.plugins, yaml.parent)
    load_plugins(cfg.plugins)
    return make_plan(cfg, world_keys(cfg), planned_tasks(cfg))


def test_a_plugin_edit_recomputes_its_cells_only_and_the_dry_run_says_why(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FR_BENCH_CACHE", str(tmp_path / "cache"))
    for name in ("tok", "base", "m", "c"):
        (tmp_path / name).mkdir()
    data = tmp_path / "rows.jsonl"
    data.write_text('{"question": "1+1?", "answer": "#### 2"}\n')
    plugin = tmp_path / "ideas" / "policy.py"
    plugin.parent.mkdir()
    plugin.write_text(POLICY)
    yaml = tmp_path / "sweep.yaml"
    yaml.write_text(f"""
name: t
plugins: [ideas/policy.py]
world: {{kind: checkpoints, tokenizer: {tmp_path}/tok, base: {tmp_path}/base, router_init: {tmp_path}/base,
        experts: {{math: {tmp_path}/m, code: {tmp_path}/c}}}}
tasks: {{gsm8k: {{task: gsm8k, data: {data}}}}}
seeds: [0]
methods:
  fusionroute: {{method: fusionroute}}
  idea: {{method: fusionroute, options: {{policy: fp_test_policy}}}}
  expert_math: {{method: single_model, options: {{model: math}}}}
""")
    first = _plan(yaml)
    assert any("ideas/policy.py" in label for c in first.cells if c.method == "idea" for label in c.code)
    for c in first.cells:                      # pretend the first sweep finished every cell
        cell_dir(c.key).mkdir(parents=True)
        (cell_dir(c.key) / COMPLETE_MARKER).write_text("ok\n")
    code_index.record(first)

    plugin.write_text(POLICY + "\nTUNED = 2\n")
    second = _plan(yaml)
    keys = lambda plan: {c.method: c.key for c in plan.cells}  # noqa: E731
    assert {m for m in keys(first) if keys(first)[m] != keys(second)[m]} == {"idea"}
    reasons = code_index.stale_reasons(second)
    assert reasons["idea/gsm8k/seed0"] == f"code changed: {plugin}"
    assert not any(label.startswith(("fusionroute/", "expert_math/")) for label in reasons)
    assert f"code changed: {plugin}: idea/gsm8k/seed0" in code_index.describe_stale(second)
    assert reasons["router_sft[seed=0]"] == "new"  # artifacts of the first plan were never built here


def test_the_micro_world_is_keyed_by_its_code(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An edit to the world's training loop retrains the world (and so re-keys every cell); the world key and the
    cached models carry `world_code`."""
    from fr_bench.micro import build
    from fr_bench.sweep.worlds import world_key

    before = _codes(project)
    lm = project / "fr_bench" / "training" / "lm.py"
    lm.write_text(lm.read_text() + "\n\nLM_EDIT = 1\n")
    assert "micro_world" in {k for k in before if before[k] != _codes(project)[k]}
    assert build.world_code() == Fingerprinter().code(build_micro_world)
    assert {"fr_bench/micro/build.py", "fr_bench/training/lm.py"} <= set(build.world_code())
    cfg = load_config(SweepConfig, None, ["name=t"])
    key = world_key(cfg.world)
    monkeypatch.setattr(build, "world_code", lambda: {"fr_bench/training/lm.py": "edited"})
    assert world_key(cfg.world) != key
