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


def _tiny_lm(kind: str) -> torch.nn.Module:
    """Random tiny CausalLMs: Llama, Gemma-2 with a final-logit softcap that bites (cap 2) and a sliding window
    shorter than the batch, and Cohere (logits times `logit_scale`)."""
    from transformers import (CohereConfig, CohereForCausalLM, Gemma2Config, Gemma2ForCausalLM, LlamaConfig,
                              LlamaForCausalLM)

    torch.manual_seed(0)
    shape = dict(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=64, initializer_range=1.0)
    if kind == "llama":
        return LlamaForCausalLM(LlamaConfig(**shape)).eval()
    if kind == "gemma2":
        shape["initializer_range"] = 0.3                               # logits around the cap, not all saturated
        return Gemma2ForCausalLM(Gemma2Config(**shape, head_dim=8, final_logit_softcapping=2.0, sliding_window=4,
                                              attn_implementation="eager")).eval()
    return CohereForCausalLM(CohereConfig(**shape, logit_scale=0.5)).eval()


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids [3, 12], mask, and a shifted response mask [3, 11] (prompts of 3-5 tokens, padding False)."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 40, (3, 12), generator=g)
    lengths, prompts = [12, 9, 7], [3, 5, 4]
    mask = (torch.arange(12)[None] < torch.tensor(lengths)[:, None]).long()
    pos = torch.arange(11)[None]
    response = (pos >= torch.tensor(prompts)[:, None] - 1) & (pos < torch.tensor(lengths)[:, None] - 1)
    return ids.masked_fill(mask == 0, 0), mask, response


def _head_rows(model: torch.nn.Module) -> list[tuple[int, ...]]:
    seen: list[tuple[int, ...]] = []
    model.get_output_embeddings().register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape)))
    return seen


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize("kind", ["llama", "gemma2"])
@torch.no_grad()
def test_response_logits_equal_the_full_forward_at_response_positions(kind, bf16):
    model = _tiny_lm(kind)
    ids, mask, response = _batch()
    seen = _head_rows(model)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):    # as the SFT step calls the experts
        full = model(input_ids=ids, attention_mask=mask).logits[:, :-1][response]
        got = es.response_logits(model, ids, mask, response)
    assert seen == [(3, 12, 32), (int(response.sum()), 32)]            # the fast path: head on response rows only
    assert got.dtype == full.dtype and got.shape == full.shape == (int(response.sum()), 40)
    if kind == "gemma2":                                                # the softcap is in play
        model.config.final_logit_softcapping = None
        raw = model(input_ids=ids, attention_mask=mask).logits[:, :-1][response]
        assert full.abs().max() <= 2.0 < raw.abs().max()
    assert torch.allclose(got.float(), full.float(), rtol=1e-6, atol=1e-6)


def test_response_logits_take_the_full_forward_for_other_logit_heads():
    ids, mask, response = _batch()
    cohere = _tiny_lm("cohere")                                         # logits * logit_scale after the head
    seen = _head_rows(cohere)
    with torch.no_grad():
        got = es.response_logits(cohere, ids, mask, response)
        full = cohere(input_ids=ids, attention_mask=mask).logits[:, :-1][response]
    assert seen == [(3, 12, 32)] * 2 and torch.equal(got, full)

    llama = _tiny_lm("llama")
    llama.config.logits_scaling = 4.0                                   # a scale attribute on a listed type
    assert _calls_full_forward(llama)

    class Scaled(type(llama)):                                          # a subclass may change forward
        pass

    llama.config.logits_scaling = None
    llama.__class__ = Scaled
    assert _calls_full_forward(llama)


def _calls_full_forward(model: torch.nn.Module) -> bool:
    ids, mask, response = _batch()
    seen = _head_rows(model)
    with torch.no_grad():
        es.response_logits(model, ids, mask, response)
    return seen == [(3, 12, 32)]
