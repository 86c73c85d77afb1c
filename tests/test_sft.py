"""Router SFT: expert-signal cache, batch alignment, real tiny fits, the NaN guard (fr_bench/training/sft.py etc.)."""
from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from fr_bench.cache import atomic_dir
from fr_bench.config import ConfigError
from fr_bench.models.router import RouterModel
from fr_bench.training import expert_signals as es
from fr_bench.training.configs import SFTConfig
from fr_bench.training.guards import NonFiniteLossError
from fr_bench.training.losses import IGNORE_INDEX
from fr_bench.training.data import SFTDataset
from fr_bench.training.sft import collate_sft, load_sft_examples
from fr_bench.training.stages import train_router_sft
from training_world import build_world, single_thread, world  # noqa: F401  (module fixtures)

FAST = dict(lr=1e-2, epochs=3, batch_size=8, max_length=32)


@pytest.fixture(scope="module")
def examples(world):
    return load_sft_examples(world, AutoTokenizer.from_pretrained(world.tokenizer), max_length=32)


def _signals(world, examples, **kw):
    return es.load_or_compute_signals(world.experts, examples, batch_size=5, pad_id=0, device="cpu", dtype=None,
                                      **{"vocab": True, "topk": 0, **kw})


def _expert_logps(world, example):
    ids = torch.tensor([example["input_ids"]])
    out = []
    for path in world.experts.values():
        with torch.no_grad():
            out.append(AutoModelForCausalLM.from_pretrained(path)(input_ids=ids).logits[0, :-1].log_softmax(-1))
    return torch.stack(out, 1)  # [S, N, V]


def test_signals_match_the_experts_and_are_cached(world, examples, monkeypatch):
    table, folder, hit = _signals(world, examples)
    assert not hit and (folder / es.SIGNAL_FILE).is_file()
    i = 3
    sig = table.example(i)
    logp = _expert_logps(world, examples[i])
    labels = torch.tensor(examples[i]["labels"][1:])
    response = labels != IGNORE_INDEX
    gold = logp.gather(-1, labels.clamp_min(0)[:, None, None].expand(-1, logp.shape[1], 1)).squeeze(-1)
    assert torch.allclose(sig["gold_logps"][response], gold[response], atol=1e-5)
    greedy = logp.argmax(-1)
    expected = response & (greedy != greedy[:, :1]).any(-1)
    assert torch.equal(sig["informative"], expected) and expected.any() and not expected.all()
    assert torch.allclose(sig["vocab_logps"].float(), logp[expected], rtol=2e-3, atol=1e-3)  # fp16 storage
    assert torch.equal(sig["gold_index"], labels[expected])

    def boom(*a, **k):
        raise AssertionError("signals recomputed despite a complete cache entry")

    monkeypatch.setattr(es, "compute_expert_signals", boom)
    again, folder2, hit2 = _signals(world, examples)
    assert hit2 and folder2 == folder and torch.equal(again.gold_logps, table.gold_logps)
    with pytest.raises(AssertionError, match="recomputed"):  # different data: a different key
        _signals(world, examples[:-1])


def test_topk_signal_is_the_vocab_restricted_to_candidates(world, examples):
    table, _, _ = _signals(world, examples, topk=2)
    i = 5
    sig = table.example(i)
    logp = _expert_logps(world, examples[i])[sig["informative"]]      # [P, N, V]
    ids = table.vocab_ids[int(table.vocab_offsets[i]):int(table.vocab_offsets[i + 1])]
    labels = torch.tensor(examples[i]["labels"][1:])[sig["informative"]]
    for p in range(len(ids)):
        real = ids[p][ids[p] >= 0]
        assert len(set(real.tolist())) == len(real)                    # deduplicated union
        expected = set(logp[p].topk(2, -1).indices.flatten().tolist()) | {int(labels[p])}
        assert set(real.tolist()) == expected
        assert int(ids[p][sig["gold_index"][p]]) == int(labels[p])
        valid = sig["vocab_valid"][p]
        assert torch.allclose(sig["vocab_logps"][p][:, valid].float(), logp[p][:, ids[p][valid]], rtol=2e-3, atol=1e-3)


def test_collate_keeps_vocab_rows_in_mask_order(world, examples):
    table, _, _ = _signals(world, examples)
    batch = collate_sft([SFTDataset(examples, table)[i] for i in (0, 7, 30)], pad_id=0)
    assert batch["vocab_logps"].shape[0] == int(batch["informative"].sum())
    # full-vocab mode: gold index == gold token id, so the concatenated rows line up with labels[informative]
    assert torch.equal(batch["gold_index"], batch["labels"][:, 1:][batch["informative"]])
    assert batch["gold_logps"].shape[:2] == batch["informative"].shape == (3, batch["input_ids"].shape[1] - 1)


def test_sft_fit_lowers_both_losses_and_trains_lm_and_head(world, tmp_path, monkeypatch):
    initial = {}
    from_lm = RouterModel.from_lm

    def spy(*args, **kwargs):
        router = from_lm(*args, **kwargs)
        initial["head"] = router.head.weight.detach().clone()
        return router

    monkeypatch.setattr(RouterModel, "from_lm", staticmethod(spy))
    out = train_router_sft(world, SFTConfig(**FAST), tmp_path / "sft")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["lm_loss_last"] < 0.8 * metrics["lm_loss_first"]
    assert metrics["route_loss_last"] < 0.8 * metrics["route_loss_first"]
    assert 0 < metrics["informative_positions"] < metrics["signal_positions"]
    router = RouterModel.from_pretrained(out)
    init = AutoModelForCausalLM.from_pretrained(world.router_init)
    assert not torch.equal(router.lm.model.embed_tokens.weight, init.model.embed_tokens.weight)
    assert (out / "logs" / "router_sft" / "metrics.csv").is_file()
    assert json.loads((out / "train_config.json").read_text())["route_loss"] == "paper_logmix"
    assert not torch.equal(router.head.weight, initial["head"])
    again = train_router_sft(world, SFTConfig(**{**FAST, "epochs": 1}), tmp_path / "sft2")
    assert json.loads((again / "metrics.json").read_text())["signal_cache_hit"] is True


@pytest.mark.parametrize("variant", [dict(route_loss="mixture"), dict(route_loss="argmax"),
                                     dict(route_vocab_topk=2), dict(route_weights="raw")])
def test_every_route_loss_variant_learns(world, tmp_path, variant):
    out = train_router_sft(world, SFTConfig(**{**FAST, **variant}), tmp_path / "sft")
    metrics = json.loads((out / "metrics.json").read_text())
    assert math.isfinite(metrics["route_loss_last"]) and metrics["route_loss_last"] < metrics["route_loss_first"]


def test_train_lm_false_trains_only_the_head(world, tmp_path):
    out = train_router_sft(world, SFTConfig(**{**FAST, "epochs": 1, "train_lm": False}), tmp_path / "sft")
    router = RouterModel.from_pretrained(out)
    init = AutoModelForCausalLM.from_pretrained(world.router_init)
    for (name, p), q in zip(router.lm.named_parameters(), init.parameters()):
        assert torch.equal(p, q), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["route_loss_last"] < metrics["route_loss_first"]


def test_nan_loss_stops_the_stage_and_caches_nothing(tmp_path):
    world = build_world(tmp_path / "nan_world", n_sft=8, expert_steps=0, router_nan=True)
    final = tmp_path / "cache" / "router_sft" / "abc"
    with pytest.raises(NonFiniteLossError, match=r"stage 'router_sft': loss '.*' is nan at global step 0"):
        with atomic_dir(final) as tmp:
            train_router_sft(world, SFTConfig(**FAST), tmp)
    assert not final.exists() and list(final.parent.iterdir()) == []


def test_config_rejects_undefined_combinations():
    with pytest.raises(ConfigError, match="route_weights"):
        SFTConfig(route_loss="mixture", route_weights="raw").validate()
    with pytest.raises(ConfigError, match="route_loss"):
        SFTConfig(route_loss="kl").validate()
