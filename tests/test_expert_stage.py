"""Experts trained by the sweep (fr_bench.expert_stage): domain data builders on the real benchmark files, the IF
generator's disjointness from IFEval, the checker filter, and a world whose experts are built and cached."""
from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from fr_bench.config import ConfigError, load_config
from fr_bench.expert_stage import (ExpertSpec, LoraSpec, build_expert, expert_key, gsm8k_rows, if_prompts, mbpp_rows,
                                   passing_responses, task_rows)
from fr_bench.micro.generators.constraints import respond
from fr_bench.sweep.config import SweepConfig
from fr_bench.parallel import WorkerPool
from fr_bench.sweep.worlds import resolve_world, world_key, worlds_to_build
from fr_bench.tasks import get_task
from training_world import single_thread, world  # noqa: F401  (module fixtures)


def test_gsm8k_rows_are_train_solutions_in_the_task_format(shared_data):
    rows = gsm8k_rows(str(shared_data / "gsm8k" / "train.jsonl"))
    test_questions = {json.loads(line)["question"] for line in open(shared_data / "gsm8k" / "test.jsonl")}
    assert len(rows) == 7473
    assert all("<<" not in r["response"] and "\n#### " in r["response"] for r in rows)
    assert not any(r["prompt"].split("\n\nSolve the problem")[0] in test_questions for r in rows)
    raw = [{**json.loads(line), "id": str(i)} for i, line in zip(range(50), open(shared_data / "gsm8k" / "train.jsonl"))]
    scored = get_task("gsm8k").score(raw, [r["response"] for r in rows[:50]])   # strict extraction reads them
    assert all(s.correct for s in scored)


def test_mbpp_rows_never_use_the_test_split(shared_data):
    source = shared_data / "mbpp" / "sanitized-mbpp.json"
    rows = mbpp_rows(str(source))
    assert len(rows) == 169      # prompt 7 + validation 43 + train 120 of sanitized, minus 569 (= test task 104)
    test_prompts = {r["prompt"] for r in json.loads(source.read_text()) if 11 <= r["task_id"] <= 510}
    assert not any(p in r["prompt"] for r in rows for p in test_prompts)
    assert all(r["response"].startswith("```python\n") for r in rows)


def test_generated_if_prompts_are_not_ifeval_prompts(shared_data):
    ifeval = [json.loads(line)["prompt"] for line in open(shared_data / "ifeval" / "input_data.jsonl")]
    rows = if_prompts(400, seed=0)
    assert len({r["prompt"] for r in rows}) == 400
    assert not {r["prompt"] for r in rows} & set(ifeval)
    requests = {r["prompt"].split(".")[0] for r in rows}        # the task part, before the instructions
    assert not any(req in p for req in requests for p in ifeval)
    assert all(r["instruction_id_list"] and len(r["kwargs"]) == len(r["instruction_id_list"]) for r in rows)


def test_only_responses_that_pass_every_checker_are_kept():
    task = get_task("ifeval")
    prompts = if_prompts(6, seed=1)
    good = [respond("the sea", p["instruction_id_list"], p["kwargs"], random.Random(0)) for p in prompts]
    plain = ["I like the sea, it is nice to see it on a sunny day"] * len(prompts)
    rows, passed = passing_responses(task, prompts, [plain, good])
    assert [r["response"] for r in rows] == good and passed == len(prompts)
    rows, passed = passing_responses(task, prompts, [plain])
    assert rows == [] and passed == 0


def test_spec_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"world.experts.if.recipe = 'qlora'.*full, lora"):
        ExpertSpec(base="b", data="if_generated", recipe="qlora").validate("world.experts.if")
    with pytest.raises(ConfigError, match=r"world.experts.if.lora.r = 0: .*>= 1"):
        ExpertSpec(base="b", data="if_generated", recipe="lora", lora=LoraSpec(r=0)).validate("world.experts.if")
    with pytest.raises(ConfigError, match=r"world.experts.if.lora.dropout"):
        ExpertSpec(base="b", data="if_generated", recipe="lora", lora=LoraSpec(dropout=1.0)).validate("world.experts.if")
    with pytest.raises(ConfigError, match=r"world.experts.math.source"):
        ExpertSpec(base="b", data="gsm8k_train").validate("world.experts.math")


def _trained_world(world, rev_data: str | None = None) -> SweepConfig:
    """A checkpoints world whose experts `copy` and `rev` are trained from the tiny world's router init."""
    train = {"lr": 1e-2, "max_steps": 2, "batch_size": 4, "max_length": 32}
    return load_config(SweepConfig, extra={"name": "t", "world": {
        "kind": "checkpoints", "tokenizer": world.tokenizer, "base": world.router_init, "router_init": "copy",
        "experts": {"copy": {"base": world.router_init, "data": world.sft_data["copy"], "train": train},
                    "rev": {"base": world.router_init, "data": rev_data or world.sft_data["rev"], "train": train},
                    "other": world.experts["other"]},
        "sft_data": {"copy": "copy", "rev": world.sft_data["rev"]}}})


def test_world_trains_its_experts_once_and_reuses_them(world, tmp_path, monkeypatch):
    monkeypatch.setenv("FR_BENCH_CACHE", str(tmp_path))
    cfg = _trained_world(world)
    world_key(cfg.world)
    assert worlds_to_build(cfg) == {0: ["expert copy", "expert rev"]}      # the dry run's world line
    built = resolve_world(cfg)
    assert worlds_to_build(cfg) == {0: []}
    assert built.router_init == built.experts["copy"] != world.router_init
    metrics = json.loads(open(f"{built.experts['rev']}/metrics.json").read())
    assert metrics["steps"] == 2 and metrics["rows"] == 24
    assert built.sft_data == {"copy": f"{built.experts['copy']}/train_rows.jsonl", "rev": world.sft_data["rev"]}
    assert len(open(built.sft_data["copy"]).readlines()) == 24
    weights = Path(built.experts["copy"]) / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    again = resolve_world(cfg)                                   # cached: the same folders, nothing retrained
    assert again.experts == built.experts and weights.stat().st_mtime_ns == mtime
    key = world_key(cfg.world)
    Path(world.sft_data["rev"]).write_text(Path(world.sft_data["rev"]).read_text())   # same bytes: same key
    assert world_key(cfg.world) == key
    with open(world.sft_data["rev"], "a") as fh:                 # an expert's data changes: so does the world
        fh.write(json.dumps({"prompt": "copy w1", "response": "w1"}) + "\n")
    assert world_key(cfg.world) != key
    bad = load_config(SweepConfig, extra={"name": "t", "world": {
        "kind": "checkpoints", "tokenizer": world.tokenizer, "base": world.router_init, "router_init": "copy",
        "experts": {"copy": {"base": world.router_init, "data": "gsm8k_train"}, "rev": world.experts["rev"]}}})
    with pytest.raises(ConfigError, match="world.experts.copy.source"):
        world_key(bad.world)


def test_trained_experts_train_on_the_worker_pool_to_the_serial_weights(world, tmp_path, monkeypatch):
    """With the sweep's worker pool the experts train in the workers at once, to the weights a serial build gets; a
    failing expert is raised naming it, after the others were cached."""
    monkeypatch.setenv("FR_BENCH_CACHE", str(tmp_path / "serial"))
    serial = resolve_world(_trained_world(world))
    monkeypatch.setenv("FR_BENCH_CACHE", str(tmp_path / "pool"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "copy w1"}) + "\n")             # no response: the expert cannot train
    with WorkerPool(2, 1) as pool:
        pooled = resolve_world(_trained_world(world), pool)
        with pytest.raises(RuntimeError, match=r"world.experts.rev failed: KeyError"):
            resolve_world(_trained_world(world, rev_data=str(bad)), pool)
    for name in ("copy", "rev"):
        a, b = (load_file(f"{w.experts[name]}/model.safetensors") for w in (serial, pooled))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert worlds_to_build(_trained_world(world, rev_data=str(bad))) == {0: ["expert rev"]}   # copy was cached


def test_task_rows_carry_their_gold_response(shared_data):
    spec = ExpertSpec(base="b", data="mbpp_train", source=str(shared_data / "mbpp" / "sanitized-mbpp.json"))
    rows = task_rows(spec, [])
    assert len(rows) == 169 and all(r["response"].startswith("```python\n") and "test_list" in r for r in rows)
    assert get_task("mbpp").user_message(rows[0]).startswith("You are an expert Python programmer")
    spec = ExpertSpec(base="b", data="if_generated", if_prompts=5)
    prompts = if_prompts(5, seed=0)
    rows = task_rows(spec, [{"prompt": prompts[2]["prompt"], "response": "kept"}])
    assert [(r["key"], r["response"]) for r in rows] == [(2, "kept")] and rows[0]["instruction_id_list"]


def test_lora_target_errors_name_the_field_and_the_model_layers(world):
    spec = ExpertSpec(base=world.router_init, data="if_generated", recipe="lora",
                      lora=LoraSpec(target_modules=["q_proj", "qkv_proj"]))
    with pytest.raises(ConfigError, match=r"world.experts.if.lora.target_modules: 'qkv_proj'.* k_proj, lm_head, o_proj"):
        spec.validate("world.experts.if")
    ExpertSpec(base=world.router_init, data="if_generated", recipe="lora",
               lora=LoraSpec(target_modules=["gate_proj", "self_attn.q_proj"])).validate("world.experts.if")
    cfg = load_config(SweepConfig, extra={"name": "t", "world": {       # the sweep refuses it before building anything
        "kind": "checkpoints", "tokenizer": world.tokenizer, "base": world.router_init, "router_init": world.router_init,
        "experts": {"copy": {"base": world.router_init, "data": world.sft_data["copy"], "recipe": "lora",
                             "lora": {"r": -1}}, "rev": world.experts["rev"]}}})
    with pytest.raises(ConfigError, match=r"world.experts.copy.lora.r = -1"):
        world_key(cfg.world)


def test_lora_expert_is_the_base_with_merged_adapters_on_its_targets_only(world):
    train = {"lr": 1e-2, "max_steps": 2, "batch_size": 4, "max_length": 32}
    spec = load_config(ExpertSpec, extra={"base": world.router_init, "tokenizer": world.tokenizer,
                                          "data": world.sft_data["copy"], "recipe": "lora", "train": train,
                                          "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}})
    folder = build_expert(spec.validate("world.experts.copy"))
    base = load_file(Path(world.router_init) / "model.safetensors")
    expert = load_file(folder / "model.safetensors")
    assert expert.keys() == base.keys()
    targeted = {k for k in base if ".q_proj." in k or ".v_proj." in k}
    assert len(targeted) == 4                                    # 2 layers x (q, v) weights
    assert all(not torch.equal(expert[k], base[k]) for k in targeted)
    assert all(torch.equal(expert[k], base[k]) for k in base.keys() - targeted)
    model, info = AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and type(model).__name__ == "LlamaForCausalLM"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["recipe"] == "lora" and metrics["steps"] == 2
    assert metrics["trainable_params"] == 2 * (4 * (32 + 32) + 4 * (32 + 16))   # per layer: q 32->32, v 32->16
    full = load_config(ExpertSpec, extra={"base": world.router_init, "data": world.sft_data["copy"], "train": train})
    assert expert_key(spec) != expert_key(replace(spec, recipe="full"))
    assert expert_key(spec) != expert_key(replace(spec, lora=replace(spec.lora, r=8)))
    assert expert_key(full) == expert_key(replace(full, lora=LoraSpec(r=2)))   # full: the lora settings are unused
