"""The plain causal-LM trainer: batching and masking, the LR schedule, and a real Lightning fit that learns."""
from __future__ import annotations

import csv
import math

import pytest
import torch

from fr_bench.chat import encode_example
from fr_bench.training.data import LengthGroupedBatchSampler, SFTDataset, collate, load_pairs
from fr_bench.training.harness import adamw, warmup_cosine
from fr_bench.training.lm import LMTrainConfig, fit_causal_lm

ROWS = [{"prompt": f"What is {a} plus {b}?", "response": f"{a} + {b} = {a + b}"} for a in range(6) for b in range(6)]


@pytest.fixture(scope="module")
def tokenizer():
    from fr_bench.micro.tokenizer import train_tokenizer

    return train_tokenizer([r["prompt"] + "\n" + r["response"] for r in ROWS], vocab_size=300)


def tiny_llama(tokenizer, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=128, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))


def test_dataset_encodes_like_chat_encode_example(tokenizer) -> None:
    ds = SFTDataset.from_rows(ROWS[:3], tokenizer, max_length=64)
    assert ds[1] == encode_example(tokenizer, ROWS[1]["prompt"], ROWS[1]["response"], 64)
    labels = ds[1]["labels"]
    first = next(i for i, v in enumerate(labels) if v != -100)
    assert first > 0 and labels[-1] == tokenizer.eos_token_id  # prompt masked, response + eos trained


def test_collate_pads_right_and_masks(tokenizer) -> None:
    ds = SFTDataset.from_rows(ROWS[:2] + [{"prompt": "x", "response": "y"}], tokenizer)
    batch = collate([ds[0], ds[2]], pad_id=tokenizer.pad_token_id)
    n_short = len(ds[2]["input_ids"])
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert batch["attention_mask"][1].sum() == n_short
    assert (batch["input_ids"][1, n_short:] == tokenizer.pad_token_id).all()
    assert (batch["labels"][1, n_short:] == -100).all()


def test_length_grouped_sampler_covers_everything_once_and_is_seeded() -> None:
    lengths = [((i * 37) % 50) + 1 for i in range(203)]
    s1, s2 = (LengthGroupedBatchSampler(lengths, 8, seed=1, mega=16),
              LengthGroupedBatchSampler(lengths, 8, seed=1, mega=16))
    epoch1 = list(s1)
    assert epoch1 == list(s2)
    assert sorted(i for b in epoch1 for i in b) == list(range(203)) and len(epoch1) == len(s1)
    assert list(s1) != epoch1  # a new order next epoch
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in epoch1]
    assert sum(spread) / len(spread) < 10  # batches hold similar lengths (random batches would spread ~40)


def test_warmup_cosine() -> None:
    assert warmup_cosine(0, 10, 100, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 100, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(10, 10, 100, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(55, 10, 100, 0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert warmup_cosine(100, 10, 100, 0.1) == pytest.approx(0.1)


def test_router_schedule_is_constant_after_warmup() -> None:
    # min_ratio = 1: the router stages' "linear warm-up, then constant", whatever the total
    assert [warmup_cosine(s, 4, -1, 1.0) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_cosine(0, 0, 10, 1.0) == 1.0


def test_adamw_recipe_groups_and_frozen_parameters(tokenizer) -> None:
    model = tiny_llama(tokenizer)
    model.model.embed_tokens.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    (group,) = adamw(model, 1e-3, 0.1, 0, 10)["optimizer"].param_groups
    assert len(group["params"]) == len(trainable) and group["weight_decay"] == 0.1
    matrices, vectors = adamw(model, 1e-3, 0.1, 0, 10, betas=(0.9, 0.95), decay_vectors=False)["optimizer"].param_groups
    assert all(p.dim() >= 2 for p in matrices["params"]) and all(p.dim() == 1 for p in vectors["params"])
    assert (matrices["weight_decay"], vectors["weight_decay"], vectors["betas"]) == (0.1, 0.0, (0.9, 0.95))
    assert len(matrices["params"]) + len(vectors["params"]) == len(trainable)


def test_only_the_harness_builds_a_trainer() -> None:
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    builders = [str(f.relative_to(repo)) for d in ("fr_bench", "baselines") for f in (repo / d).rglob("*.py")
                if "L.Trainer(" in f.read_text() or "lightning.Trainer(" in f.read_text()]
    assert builders == ["fr_bench/training/harness.py"]


def test_load_pairs_names_the_missing_field(tmp_path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "c"}\n')
    with pytest.raises(KeyError, match="line 2.*response"):
        load_pairs([path])


def _mean_loss(model, tokenizer, rows) -> float:
    batch = collate(SFTDataset.from_rows(rows, tokenizer).examples, tokenizer.pad_token_id)
    with torch.no_grad():
        return float(model(**batch).loss)


def test_lightning_fit_lowers_the_loss_and_logs(tokenizer, tmp_path) -> None:
    model = tiny_llama(tokenizer)
    before = _mean_loss(model, tokenizer, ROWS)
    cfg = LMTrainConfig(max_steps=40, batch_size=8, lr=1e-2, warmup_steps=2, log_every_n_steps=5,
                        progress_bar=False, limit_val_batches=2)
    result = fit_causal_lm(model, tokenizer, ROWS, ROWS[:8], cfg, tmp_path, name="tiny")
    after = _mean_loss(model, tokenizer, ROWS)
    assert result.steps == 40 and result.tokens > 40 * 8 * 5
    assert after < 0.6 * before, (before, after)
    assert result.val_loss is not None and result.val_loss < before
    with open(tmp_path / "tiny" / "version_0" / "metrics.csv") as fh:
        logged = list(csv.DictReader(fh))
    assert any(r.get("train_loss") for r in logged) and any(r.get("val_loss") for r in logged)
    assert not model.training  # handed back in eval mode


def test_fit_is_deterministic(tokenizer, tmp_path) -> None:
    cfg = LMTrainConfig(max_steps=5, batch_size=8, lr=1e-2, warmup_steps=1, progress_bar=False)
    m1, m2 = tiny_llama(tokenizer), tiny_llama(tokenizer)
    fit_causal_lm(m1, tokenizer, ROWS, [], cfg, tmp_path / "a")
    fit_causal_lm(m2, tokenizer, ROWS, [], cfg, tmp_path / "b")
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(p1, p2)


def test_config_errors_name_the_key() -> None:
    from fr_bench.config import ConfigError

    with pytest.raises(ConfigError, match="batch_size"):
        LMTrainConfig(batch_size=0).validate()
