"""CDPO: real tiny fits of both forms, frozen routing head, no gradient into experts, mixing, preference pairs."""
from __future__ import annotations

import csv
import json
import math
from functools import partial

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from fr_bench.models.router import HEAD_FILE, RouterModel
from fr_bench.training.cdpo import MixedDataset, RouterCDPO, collate_mixed, encode_pairs, precompute_pair_tables
from fr_bench.training.configs import CDPOConfig, PairsConfig, SFTConfig
from fr_bench.training.data import read_jsonl
from fr_bench.training.losses import IGNORE_INDEX
from fr_bench.training.preferences import build_preference_pairs, load_preference_pairs
from fr_bench.training.data import SFTDataset
from fr_bench.training.sft import load_sft_examples
from fr_bench.training.preference_stages import train_router_cdpo
from fr_bench.training.stages import build_router_pairs, train_router_sft
from training_world import CopyTask, single_thread, world, write_pairs  # noqa: F401  (module fixtures)

CDPO_FAST = dict(lr=1e-3, epochs=4, batch_size=8, max_length=32)


@pytest.fixture(scope="module")
def sft_dir(world, tmp_path_factory):
    return train_router_sft(world, SFTConfig(lr=1e-2, epochs=3, batch_size=8, max_length=32),
                            tmp_path_factory.mktemp("sft"))


@pytest.fixture(scope="module")
def pairs_path(world, tmp_path_factory):
    return write_pairs(tmp_path_factory.mktemp("pairs") / "pairs.jsonl", world)


def _csv_losses(out, stage, key):
    rows = list(csv.DictReader(open(out / "logs" / stage / "metrics.csv")))
    return [float(r[key]) for r in rows if r.get(key)]


def test_combined_cdpo_lowers_its_loss_keeps_the_head_and_mixes_sft(world, sft_dir, pairs_path, tmp_path):
    cfg = CDPOConfig(**{**CDPO_FAST, "form": "combined"})
    out = train_router_cdpo(world, cfg, sft_dir, tmp_path / "cdpo", pairs_path=pairs_path)
    losses = _csv_losses(out, "router_cdpo", "train/cdpo_loss")
    assert losses[0] == pytest.approx(math.log(2), abs=1e-5)  # policy == precomputed reference at step 0
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.02
    before, after = load_file(sft_dir / HEAD_FILE), load_file(out / HEAD_FILE)
    assert all(torch.equal(before[k], after[k]) for k in before)
    sft_lm = RouterModel.from_pretrained(sft_dir).lm
    cdpo_lm = RouterModel.from_pretrained(out).lm
    assert not torch.equal(sft_lm.lm_head.weight, cdpo_lm.lm_head.weight)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["sft_samples"] == metrics["pairs"] == len(read_jsonl(pairs_path))
    assert metrics["route_loss_first"] > 0  # mixed SFT samples carry L_LM + lambda * L_route


def test_paper_form_starts_at_the_expert_bias_and_learns(world, sft_dir, pairs_path, tmp_path):
    n_pairs = len(read_jsonl(pairs_path))
    cfg = CDPOConfig(**{**CDPO_FAST, "batch_size": 2 * n_pairs, "epochs": 6})
    assert cfg.form == "paper"  # the paper's objective is the default
    out = train_router_cdpo(world, cfg, sft_dir, tmp_path / "cdpo", pairs_path=pairs_path)
    tok = AutoTokenizer.from_pretrained(world.tokenizer)
    seqs = encode_pairs(read_jsonl(pairs_path), tok, 32)
    tables = precompute_pair_tables(RouterModel.from_pretrained(sft_dir), list(world.experts.values()), seqs, "paper")
    e = tables["expert_logps"]
    bias = cfg.beta * (e[:n_pairs] - e[n_pairs:])
    losses = _csv_losses(out, "router_cdpo", "train/cdpo_loss")
    assert losses[0] == pytest.approx(float(-F.logsigmoid(bias).mean()), abs=1e-5)  # first batch = every pair
    assert losses[-1] < losses[0]


def test_expert_term_is_the_argmax_routed_expert(world, sft_dir, pairs_path):
    """The precomputed expert log-probs equal a direct evaluation of the expert the frozen head picks per token."""
    tok = AutoTokenizer.from_pretrained(world.tokenizer)
    seq = encode_pairs(read_jsonl(pairs_path)[:1], tok, 32)[:1]
    router = RouterModel.from_pretrained(sft_dir)
    experts = [AutoModelForCausalLM.from_pretrained(p) for p in world.experts.values()]
    tables = precompute_pair_tables(router, experts, seq, "combined")
    ids = torch.tensor([seq[0]["input_ids"]])
    labels = torch.tensor(seq[0]["labels"][1:])
    with torch.no_grad():
        choice = router(ids).routing_logits[0, :-1].argmax(-1)
        per_expert = torch.stack([m(input_ids=ids).logits[0, :-1].log_softmax(-1) for m in experts])  # [N, S, V]
    chosen = per_expert[choice, torch.arange(len(choice))]                                          # [S, V]
    response = labels != IGNORE_INDEX
    assert torch.equal(tables["choices"][0], choice)
    assert torch.allclose(tables["selected"][0].float(), chosen[response], rtol=2e-3, atol=1e-3)
    gold = chosen[response].gather(-1, labels[response][:, None]).sum()
    assert float(tables["expert_logps"][0]) == pytest.approx(float(gold), abs=1e-4)


def test_no_gradient_reaches_an_expert_and_the_head_is_not_optimised(world, sft_dir, pairs_path):
    tok = AutoTokenizer.from_pretrained(world.tokenizer)
    router = RouterModel.from_pretrained(sft_dir)
    head_before = {k: v.clone() for k, v in router.head.state_dict().items()}
    experts = [AutoModelForCausalLM.from_pretrained(p) for p in world.experts.values()]
    fired = []
    for m in experts:  # deliberately trainable: only the code path may keep gradients away from them
        for p in m.parameters():
            p.requires_grad_(True)
            p.register_hook(lambda g: fired.append(g))
    expert_before = [{k: v.clone() for k, v in m.state_dict().items()} for m in experts]
    seqs = encode_pairs(read_jsonl(pairs_path), tok, 32)
    tables = precompute_pair_tables(router, experts, seqs, "combined")
    assert not any(t.requires_grad for t in tables["selected"]) and not tables["ref_logps"].requires_grad
    sft_cfg = SFTConfig(max_length=32, route_loss="mixture")
    cfg = CDPOConfig(**CDPO_FAST)
    data = MixedDataset(seqs, tables, SFTDataset(load_sft_examples(world, tok, 32)), 0.0, seed=0)
    module = RouterCDPO(router, cfg, sft_cfg)
    trainer = L.Trainer(max_steps=4, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    loader = torch.utils.data.DataLoader(data, batch_size=4, shuffle=True, collate_fn=partial(collate_mixed, pad_id=0))
    module.train()
    trainer.fit(module, loader)
    optimised = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert not optimised & {id(p) for m in experts for p in m.parameters()}
    assert not optimised & {id(p) for p in router.head.parameters()}
    assert fired == [] and all(p.grad is None for m in experts for p in m.parameters())
    for m, before in zip(experts, expert_before):
        assert all(torch.equal(v, before[k]) for k, v in m.state_dict().items())
    assert all(torch.equal(v, head_before[k]) for k, v in router.head.state_dict().items())
    assert trainer.global_step == 4


def test_mixed_dataset_ratio_and_batch_layout(world, pairs_path):
    tok = AutoTokenizer.from_pretrained(world.tokenizer)
    seqs = encode_pairs(read_jsonl(pairs_path), tok, 32)
    n = len(seqs) // 2
    V = len(tok)
    tables = {"ref_logps": torch.arange(2 * n, dtype=torch.float), "expert_logps": torch.zeros(2 * n),
              "selected": [torch.ones(sum(l != IGNORE_INDEX for l in s["labels"][1:]), V, dtype=torch.float16)
                           for s in seqs]}
    sft = SFTDataset(load_sft_examples(world, tok, 32))
    for ratio, expected in ((1.0, n), (0.5, round(0.5 * n)), (10.0, 10 * n), (0.0, 0)):
        assert len(MixedDataset(seqs, tables, sft, ratio, seed=0)) == n + expected
    data = MixedDataset(seqs, tables, sft, 1.0, seed=0)
    batch = collate_mixed([data[0], data[n], data[1], data[n + 1]], pad_id=0)   # 2 pairs, 2 SFT samples
    assert batch["n_pairs"] == 2 and batch["input_ids"].shape[0] == 6
    assert batch["ref_chosen"].tolist() == [0.0, 1.0] and batch["ref_rejected"].tolist() == [n, n + 1.0]
    labels = batch["labels"][:4, 1:batch["pair_width"]]
    dense = batch["pair_expert_logps"]
    assert torch.equal(dense[..., 0] != 0, labels != IGNORE_INDEX)                # expert log-probs on response only
    assert batch["sft"]["input_ids"].shape[0] == 2


class _ScriptedSampler:
    """generate_fn stand-in: sample k of row i is script[i][k]."""

    def __init__(self, script):
        self.script = script

    def __call__(self, rows, seed):
        return [self.script[i][seed] for i in range(len(rows))]


def test_pairs_come_from_verifier_labels():
    rows = [{"id": "a", "prompt": "copy w1 w2", "response": "w1 w2"},
            {"id": "b", "prompt": "copy w3", "response": "w3"},
            {"id": "c", "prompt": "copy w4", "response": "w4"}]
    script = [["w2 w1", "w1 w2", "w1 w2"],    # one wrong, two right -> one pair
              ["w3", "w3", "w3"],             # all correct -> no pair
              ["w5", "w6", "w5"]]             # never correct -> no pair unless gold_as_chosen
    pairs, log = build_preference_pairs(rows, CopyTask(), _ScriptedSampler(script), 3, seed=0, domain="copy")
    assert [(p["id"], p["chosen"], p["rejected"]) for p in pairs] == [("a", "w1 w2", "w2 w1")]
    assert len(log) == 9 and sum(r["correct"] for r in log) == 5
    pairs, _ = build_preference_pairs(rows, CopyTask(), _ScriptedSampler(script), 3, seed=0, pairs_per_prompt=2,
                                      gold_as_chosen=True)
    assert [(p["id"], p["chosen"], p["rejected"], p["chosen_source"]) for p in pairs] == [
        ("a", "w1 w2", "w2 w1", "sampled"), ("c", "w4", "w5", "gold"), ("c", "w4", "w6", "gold")]


def test_pairs_load_from_jsonl_including_conversational_rows(tmp_path):
    path = tmp_path / "prefs.jsonl"
    path.write_text(json.dumps({"q": "hi", "good": "a", "bad": "b"}) + "\n" + json.dumps(
        {"q": [{"role": "user", "content": "yo"}], "good": [{"role": "assistant", "content": "c"}],
         "bad": [{"role": "assistant", "content": "d"}]}) + "\n")
    cfg = PairsConfig(source="file", path=str(path), prompt_column="q", chosen_column="good", rejected_column="bad")
    assert load_preference_pairs(cfg) == [{"prompt": "hi", "chosen": "a", "rejected": "b"},
                                          {"prompt": "yo", "chosen": "c", "rejected": "d"}]
    with pytest.raises(KeyError, match="prompt_column"):
        load_preference_pairs(PairsConfig(source="file", path=str(path)))


@pytest.mark.slow
def test_pairs_sampled_from_the_sft_system_through_the_engine(world, sft_dir, tmp_path):
    cfg = PairsConfig(n_samples=2, temperature=1.0, max_new_tokens=6, gold_as_chosen=True)
    path = build_router_pairs(world, cfg, sft_dir, tmp_path, seed=0, accelerator="cpu")
    pairs = read_jsonl(path)
    samples = read_jsonl(tmp_path / "pair_samples.jsonl")
    n_rows = sum(len(read_jsonl(p)) for p in world.pref_prompts.values())
    assert len(samples) == 2 * n_rows and {s["domain"] for s in samples} == {"copy", "rev"}
    assert pairs and all(p["chosen"] != p["rejected"] for p in pairs)
    by_id = {(s["id"], s["output"]): s["correct"] for s in samples}
    for p in pairs:
        assert by_id[(p["id"], p["rejected"])] is False
        assert p["chosen_source"] == "gold" or by_id[(p["id"], p["chosen"])] is True
