"""Online expert signals (SFTConfig.expert_signals: online) give the losses the cached table gives, per batch and
through the SFT and CDPO stages (fr_bench/training/expert_signals.py: OnlineExpertSignals)."""
from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from fr_bench.cache import cache_root
from fr_bench.config import ConfigError
from fr_bench.training import expert_signals as es
from fr_bench.training.configs import CDPOConfig, SFTConfig
from fr_bench.training.data import SFTDataset
from fr_bench.training.sft import collate_sft, load_sft_examples, sft_losses
from fr_bench.training.preference_stages import train_router_cdpo
from fr_bench.training.stages import train_router_sft
from training_world import single_thread, world, write_pairs  # noqa: F401  (module fixtures)

FAST = dict(lr=1e-2, epochs=1, batch_size=8, max_length=32)
VARIANTS = [dict(), dict(route_vocab_topk=3), dict(route_weights="raw"), dict(route_loss="mixture"),
            dict(route_loss="argmax")]


@pytest.fixture(scope="module")
def examples(world):
    return load_sft_examples(world, AutoTokenizer.from_pretrained(world.tokenizer), max_length=32)


@pytest.fixture(scope="module")
def experts(world):
    return [es.open_frozen(p, torch.device("cpu"), None) for p in world.experts.values()]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()) or "paper")
def test_online_loss_equals_cached_loss(world, examples, experts, variant):
    cfg = SFTConfig(**variant).validate()
    table = es.compute_expert_signals(experts, examples, vocab=cfg.needs_vocab_signal, topk=cfg.route_vocab_topk,
                                      batch_size=5, pad_id=0)
    pick = list(range(0, len(examples), 3))               # both domains, another batching than the cached pass
    cached_batch = collate_sft([SFTDataset(examples, table)[i] for i in pick], pad_id=0)
    plain_batch = collate_sft([SFTDataset(examples)[i] for i in pick], pad_id=0)
    online = es.OnlineExpertSignals(experts, vocab=cfg.needs_vocab_signal, topk=cfg.route_vocab_topk)
    got = online(plain_batch["input_ids"], plain_batch["attention_mask"], plain_batch["labels"])
    assert torch.equal(got["informative"], cached_batch["informative"]) and got["informative"].sum() > 0
    torch.testing.assert_close(got["gold_logps"], cached_batch["gold_logps"], rtol=0, atol=1e-5)
    torch.manual_seed(0)
    routing = torch.randn(*plain_batch["input_ids"].shape, len(experts)) * 2
    logits = torch.randn(*plain_batch["input_ids"].shape, 16)
    cached = sft_losses(logits, routing, cached_batch, cfg)
    live = sft_losses(logits, routing, plain_batch, cfg, online=online)
    # the cached vocabulary table is fp16, online stays fp32: equal up to fp16 rounding of log-probs
    torch.testing.assert_close(live["route_loss"], cached["route_loss"], rtol=1e-3, atol=1e-3)
    assert float(live["route_loss"]) > 0


def test_online_experts_stay_frozen_and_in_eval(experts):
    online = es.OnlineExpertSignals(experts, vocab=True)
    online.train()
    assert not online.training and not any(m.training for m in online.modules())
    assert not any(p.requires_grad for p in online.parameters())


def test_sft_and_cdpo_stages_online_match_cache(world, tmp_path):
    before = set((cache_root() / "expert_signals").glob("*")) if (cache_root() / "expert_signals").exists() else set()
    cached = train_router_sft(world, SFTConfig(**FAST, expert_signals="cache"), tmp_path / "cached")
    online = train_router_sft(world, SFTConfig(**FAST, expert_signals="online"), tmp_path / "online")
    m_cached, m_online = (json.loads((d / "metrics.json").read_text()) for d in (cached, online))
    assert m_online["expert_signals"] == "online" and "signal_cache" not in m_online
    assert m_cached["expert_signals"] == "cache"
    for key in ("lm_loss_first", "route_loss_first", "route_loss_last", "lm_loss_last"):
        assert m_online[key] == pytest.approx(m_cached[key], rel=2e-3), key
    after = set((cache_root() / "expert_signals").glob("*"))
    assert len(after - before) == 1                          # only the cached run wrote a signal table
    saved = AutoModelForCausalLM.from_pretrained(online)     # the checkpoint holds the router LM, not the experts
    assert sum(p.numel() for p in saved.parameters()) == sum(
        p.numel() for p in AutoModelForCausalLM.from_pretrained(world.router_init).parameters())

    pairs = write_pairs(tmp_path / "pairs.jsonl", world)
    cdpo = dict(max_steps=2, batch_size=8, lr=1e-3, max_length=32)
    out = {name: train_router_cdpo(world, CDPOConfig(**cdpo), sft, tmp_path / f"cdpo_{name}", pairs_path=pairs)
           for name, sft in (("cached", cached), ("online", online))}
    c, o = (json.loads((out[k] / "metrics.json").read_text()) for k in ("cached", "online"))
    assert o["route_loss_first"] > 0
    assert o["sft_loss_first"] == pytest.approx(c["sft_loss_first"], rel=5e-3)


def test_auto_mode_and_validation():
    assert not SFTConfig().signals_online(2048)                 # micro vocabularies: the cached table
    assert SFTConfig().signals_online(49152)                     # SmolLM2: exact loss online
    assert not SFTConfig(route_vocab_topk=32).signals_online(128256)   # explicit top-k approximation: cacheable
    assert not SFTConfig(route_loss="mixture").signals_online(128256)  # no vocabulary table needed
    assert SFTConfig(expert_signals="online").signals_online(64)
    assert not SFTConfig(expert_signals="cache").signals_online(128256)
    with pytest.raises(ConfigError, match="expert_signals"):
        SFTConfig(expert_signals="disk").validate()
