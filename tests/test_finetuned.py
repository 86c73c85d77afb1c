"""Direct fine-tuning baseline: same init and SFT-then-DPO recipe as the router, no routing; decoded by the engine."""
from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from fr_bench.chat import format_prompt
from fr_bench.methods import get_method_class
from fr_bench.training.configs import CDPOConfig, FinetuneConfig, PairsConfig, SFTConfig
from fr_bench.training.preference_stages import train_finetuned, train_finetuned_from_config
from fr_bench.training.stages import train_router_sft
from training_world import single_thread, world, write_pairs  # noqa: F401  (module fixtures)

SFT = dict(lr=1e-2, epochs=3, batch_size=8, max_length=32)
DPO = dict(lr=1e-3, epochs=3, batch_size=8, max_length=32)


def test_finetuned_follows_the_router_recipe_and_decodes(world, tmp_path):
    pairs = write_pairs(tmp_path / "pairs.jsonl", world)
    out = train_finetuned(world, SFTConfig(**SFT), CDPOConfig(**DPO), tmp_path / "ft", pairs_path=pairs)
    metrics = json.loads((out / "metrics.json").read_text())
    router = json.loads((train_router_sft(world, SFTConfig(**SFT), tmp_path / "router") / "metrics.json").read_text())
    assert metrics["sft_steps"] == router["steps"] and metrics["examples"] == router["examples"]  # same budget
    assert metrics["sft_lm_loss_last"] < 0.8 * metrics["sft_lm_loss_first"]
    assert "sft_route_loss_first" not in metrics and "dpo_route_loss_first" not in metrics  # no routing anywhere
    dpo = [float(r["train/cdpo_loss"]) for r in csv.DictReader(open(out / "logs" / "finetuned_dpo" / "metrics.csv"))
           if r.get("train/cdpo_loss")]
    assert dpo[0] == pytest.approx(math.log(2), abs=1e-5) and dpo[-1] < dpo[0]
    assert metrics["dpo_sft_loss_first"] > 0  # SFT samples mixed into DPO, as for the router
    lm = AutoModelForCausalLM.from_pretrained(out)
    init = AutoModelForCausalLM.from_pretrained(world.router_init)
    assert not torch.equal(lm.lm_head.weight, init.lm_head.weight)

    method = get_method_class("finetuned")(world, {"device": "cpu"})
    assert method.requires() == ["finetuned"]
    method.load({"finetuned": out})
    tok = AutoTokenizer.from_pretrained(world.tokenizer)
    prompt = format_prompt(tok, "copy w1 w2")
    [gen] = method.generate([prompt], max_new_tokens=5, stop=[])
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    greedy = lm.generate(ids, max_new_tokens=5, do_sample=False, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)[0, ids.shape[1]:].tolist()
    assert gen.token_ids == greedy


def test_finetune_config_needs_pairs_when_told_to_use_given_ones(world, tmp_path):
    with pytest.raises(ValueError, match="pairs_path"):
        train_finetuned_from_config(world, FinetuneConfig(pairs_from="given"), tmp_path)


@pytest.mark.slow
def test_finetuned_samples_its_own_pairs(world, tmp_path):
    cfg = FinetuneConfig(sft=SFTConfig(**SFT), dpo=CDPOConfig(**{**DPO, "epochs": 1}, pairs=PairsConfig(
        n_samples=2, max_new_tokens=6, gold_as_chosen=True)), devices="1")
    out = train_finetuned_from_config(world, cfg, tmp_path / "ft")
    pairs = [json.loads(line) for line in open(out / "pairs.jsonl")]
    samples = [json.loads(line) for line in open(out / "pair_samples.jsonl")]
    assert pairs and len(samples) == 2 * sum(1 for p in world.pref_prompts.values() for _ in open(p))
    assert json.loads((out / "metrics.json").read_text())["pairs"] == len(pairs)
