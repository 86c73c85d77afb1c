"""Planning: the dependency graph shares artifacts, keys follow what produced them, bad input fails early."""
from __future__ import annotations

import pytest

from fr_bench.config import ConfigError, load_config
from fr_bench.sweep.config import SweepConfig
from fr_bench.sweep.plan import make_plan, select
from fr_bench.sweep.worlds import planned_tasks, world_keys


@pytest.fixture
def sweep_yaml(tmp_path):
    for name in ("tok", "base", "m", "c"):
        (tmp_path / name).mkdir()
    data = tmp_path / "rows.jsonl"
    data.write_text('{"question": "1+1?", "answer": "#### 2"}\n')

    def write(methods: str, extra: str = "") -> str:
        path = tmp_path / "sweep.yaml"
        path.write_text(f"""
name: t
world:
  kind: checkpoints
  tokenizer: {tmp_path}/tok
  base: {tmp_path}/base
  router_init: {tmp_path}/base
  experts: {{math: {tmp_path}/m, code: {tmp_path}/c}}
tasks:
  gsm8k: {{task: gsm8k, data: {data}}}
seeds: [0, 1]
methods:
{methods}
{extra}
""")
        return str(path)

    return write


METHODS = """
  fusionroute: {method: fusionroute, group: fusionroute}
  sft_only: {method: fusionroute_sft_only, group: ablation}
  ta: {method: task_arithmetic}
  dare: {method: dare}
  expert_math: {method: single_model, group: expert, options: {model: math}}
"""


def plan_of(path: str, overrides=()):
    cfg = load_config(SweepConfig, path, overrides)
    return make_plan(cfg, world_keys(cfg), planned_tasks(cfg))


def test_artifacts_are_shared_and_seeded_only_where_they_depend_on_the_seed(sweep_yaml):
    plan = plan_of(sweep_yaml(METHODS))
    labels = sorted(n.label for n in plan.artifacts)
    assert labels == sorted(["router_sft[seed=0]", "router_sft[seed=1]", "pref_pairs[seed=0]", "pref_pairs[seed=1]",
                             "router_cdpo[seed=0]", "router_cdpo[seed=1]", "merge_task_arithmetic",
                             "merge_dare[seed=0]", "merge_dare[seed=1]"])
    cells = {c.label: c for c in plan.cells}
    # the SFT-only ablation reuses FusionRoute's SFT router
    assert cells["sft_only/gsm8k/seed0"].artifacts["router_sft"] == cells["fusionroute/gsm8k/seed0"].artifacts["router_sft"]
    # deterministic methods share one evaluation across seeds; trained ones do not
    assert cells["expert_math/gsm8k/seed0"].key == cells["expert_math/gsm8k/seed1"].key
    assert cells["ta/gsm8k/seed0"].key == cells["ta/gsm8k/seed1"].key
    assert cells["dare/gsm8k/seed0"].key != cells["dare/gsm8k/seed1"].key
    # build order respects dependencies
    order = [n.name for n in plan.artifacts]
    assert order.index("router_sft") < order.index("pref_pairs") < order.index("router_cdpo")


def test_keys_change_with_what_produced_them(sweep_yaml):
    path = sweep_yaml(METHODS)
    a = {c.label: c.key for c in plan_of(path).cells}
    b = {c.label: c.key for c in plan_of(path, ["artifacts.router_sft.lambda_route=0.5"]).cells}
    assert a["fusionroute/gsm8k/seed0"] != b["fusionroute/gsm8k/seed0"]   # SFT config feeds CDPO too
    assert a["ta/gsm8k/seed0"] == b["ta/gsm8k/seed0"]
    assert a == {c.label: c.key for c in plan_of(path).cells}


def test_only_selects_cells_and_their_artifacts(sweep_yaml):
    plan = select(plan_of(sweep_yaml(METHODS)), "ta,expert_*/*/seed0")
    assert sorted(c.label for c in plan.cells) == ["expert_math/gsm8k/seed0", "ta/gsm8k/seed0", "ta/gsm8k/seed1"]
    assert [n.name for n in plan.artifacts] == ["merge_task_arithmetic"]
    with pytest.raises(ConfigError, match="matches no cell"):
        select(plan_of(sweep_yaml(METHODS)), "nothing*")


def test_method_level_artifact_overrides_make_their_own_artifacts(sweep_yaml):
    """A second task-arithmetic row at MergeBench's λ = 0.4 gets its own merge; a method overriding router_sft gets
    its own SFT router *and* its own CDPO chain, while the default rows keep sharing theirs."""
    plan = plan_of(sweep_yaml(METHODS + """
  ta04: {method: task_arithmetic, artifacts: {merge_task_arithmetic: {lam: 0.4}}}
  fr_lam0: {method: fusionroute, artifacts: {router_sft: {lambda_route: 0.0}}}
"""))
    cells = {c.label: c for c in plan.cells}
    merges = [n for n in plan.artifacts if n.name == "merge_task_arithmetic"]
    assert sorted(n.config.lam for n in merges) == [0.4, 1.0]
    assert cells["ta04/gsm8k/seed0"].artifacts != cells["ta/gsm8k/seed0"].artifacts
    fr, lam0 = cells["fusionroute/gsm8k/seed0"].artifacts, cells["fr_lam0/gsm8k/seed0"].artifacts
    assert fr["router_sft"] != lam0["router_sft"] and fr["router_cdpo"] != lam0["router_cdpo"]
    assert cells["sft_only/gsm8k/seed0"].artifacts["router_sft"] == fr["router_sft"]
    assert len([n for n in plan.artifacts if n.name == "router_cdpo"]) == 4   # 2 configs x 2 seeds


def test_conditional_dependency_of_the_finetuned_baseline(sweep_yaml):
    path = sweep_yaml("  ft: {method: finetuned}")
    assert [n.name for n in plan_of(path).artifacts] == ["finetuned", "finetuned"]
    given = plan_of(path, ["artifacts.finetuned.pairs_from=given"])
    assert {n.name for n in given.artifacts} == {"router_sft", "pref_pairs", "finetuned"}


@pytest.mark.parametrize("methods,extra,overrides,match", [
    ("  x: {method: no_such_method}", "", [], "methods.x.method"),
    ("  x: {method: fusionroute, options: {stages: [cdpo]}}", "", [], "stages"),
    (METHODS, "artifacts: {router_sft: {lambda_rout: 1}}", [], "lambda_rout"),
    (METHODS, "artifacts: {router_sft: {lr: fast}}", [], "artifacts.router_sft"),
    (METHODS, "artifacts: {nonsense: {}}", [], "artifacts.nonsense"),
    ("  ta: {method: task_arithmetic, artifacts: {merge_task_arithmetic: {lamb: 0.4}}}", "", [],
     "methods.ta.artifacts.merge_task_arithmetic"),
    ("  ta: {method: task_arithmetic, artifacts: {merge_ties: {lam: 0.4}}}", "", [], "does not use"),
    ("  ta: {method: task_arithmetic, artifacts: {merge_nope: {}}}", "", [], "methods.ta.artifacts.merge_nope"),
    (METHODS, "", ["tasks.gsm8k.task=gsm9k"], "tasks.gsm8k.task"),
    (METHODS, "", ["world.experts.math=/no/such/dir"], "world.experts.math"),
    (METHODS, "", ["seeds=[]"], "seeds"),
])
def test_bad_input_fails_before_any_work_naming_the_field(sweep_yaml, methods, extra, overrides, match):
    with pytest.raises(ConfigError, match=match):
        plan_of(sweep_yaml(methods, extra), overrides)


def test_unknown_sweep_key_and_empty_data_file(sweep_yaml, tmp_path):
    with pytest.raises(ConfigError, match="batchsize"):
        plan_of(sweep_yaml(METHODS, "batchsize: 3"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        plan_of(sweep_yaml(METHODS), [f"tasks.gsm8k.data={empty}"])


def test_no_complement_routes_from_the_cdpo_router_unless_told_otherwise(sweep_yaml):
    """The ablation's default router is FusionRoute's own (the row then differs from FusionRoute in the
    complementary logits alone); `stages: [sft]` routes from the SFT router instead."""
    plan = plan_of(sweep_yaml("""
  fusionroute: {method: fusionroute, group: fusionroute}
  no_comp: {method: fusionroute_no_complement, group: ablation}
  no_comp_sft: {method: fusionroute_no_complement, group: ablation, options: {stages: [sft]}}
"""))
    needs = {c.method: set(c.artifacts) for c in plan.cells}
    assert needs["no_comp"] == needs["fusionroute"] == {"router_sft", "pref_pairs", "router_cdpo"}
    assert needs["no_comp_sft"] == {"router_sft"}
    key = {(c.method, c.seed): c.artifacts for c in plan.cells}
    assert key[("no_comp", 0)]["router_cdpo"] == key[("fusionroute", 0)]["router_cdpo"]  # one router, shared


def test_eval_split_keys_cells_apart(tmp_path):
    """Tuning on validation never reuses (or overwrites) a test cell: the split is part of the cell key."""
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nworld: {kind: micro, micro_config: experiments/micro.yaml}\n"
                    "methods: {fusionroute: {method: fusionroute}}\n")
    test, val = plan_of(str(path)), plan_of(str(path), ["world.eval_split=validation"])
    assert {c.spec.split for c in val.cells} == {"validation"} and {c.spec.split for c in test.cells} == {"test"}
    assert not {c.key for c in test.cells} & {c.key for c in val.cells}
    assert [n.key for n in test.artifacts] == [n.key for n in val.artifacts]  # the trained router is the same
    with pytest.raises(ConfigError, match="world.eval_split: 'dev'"):
        plan_of(str(path), ["world.eval_split=dev"])


def test_seeded_world_gives_every_seed_its_own_world_and_cells(tmp_path):
    """world.seeded: each seed trains its own micro world (same data), so even the experts' and the deterministic
    merges' cells belong to a seed; seed 0's world is the unseeded one."""
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nworld: {kind: micro, micro_config: experiments/micro.yaml}\nseeds: [0, 1]\n"
                    "methods: {fusionroute: {method: fusionroute}, ta: {method: task_arithmetic},\n"
                    "          expert_math: {method: single_model, options: {model: math}}}\n")
    shared, seeded = plan_of(str(path)), plan_of(str(path), ["world.seeded=true"])
    assert len(set(shared.world_keys.values())) == 1
    assert seeded.world_keys[0] == shared.world_keys[0] != seeded.world_keys[1]
    cells = {c.label: c for c in seeded.cells}
    for method in ("expert_math", "ta", "fusionroute"):
        assert cells[f"{method}/micro_math/seed0"].key != cells[f"{method}/micro_math/seed1"].key
        assert cells[f"{method}/micro_math/seed0"].seeded
    assert {n.label for n in seeded.artifacts} >= {"merge_task_arithmetic[seed=0]", "merge_task_arithmetic[seed=1]"}
    assert "worlds seed0:" in seeded.describe()
    from fr_bench.sweep.worlds import _micro_config

    cfg = load_config(SweepConfig, str(path), ["world.seeded=true"])
    one = _micro_config(cfg.world, 1)
    assert (one.model.init_seed, one.base.seed, one.expert.seed) == (1, 1, 1)
    assert one.data == _micro_config(cfg.world, 0).data   # the data, and so every evaluation row, never moves


def test_seeded_world_of_finished_checkpoints_is_an_error(sweep_yaml):
    with pytest.raises(ConfigError, match="world.seeded: this checkpoints world trains nothing"):
        plan_of(sweep_yaml(METHODS), ["world.seeded=true"])
