"""Stage entry points of CDPO and the direct fine-tuning baseline (SFT then plain DPO): world + config in, a
checkpoint folder out. Shared plumbing (fit, tokenizer, pairs files) lives in `stages`."""
from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch

from ..cache import atomic_write_json
from ..config import to_dict
from ..models.router import RouterModel
from ..world import World
from .cdpo import MixedDataset, RouterCDPO, collate_mixed, encode_pairs, precompute_pair_tables
from .configs import CDPOConfig, FinetuneConfig, SFTConfig
from .data import PAIRS_FILE, SFTDataset, read_jsonl
from .preferences import load_preference_pairs, sample_world_pairs, single_model_engine
from .sft import RouterSFT, collate_sft, load_sft_examples
from .expert_signals import OnlineExpertSignals
from .stages import (METRICS, TRAIN_CONFIG, build_router_pairs, device_of, expert_signals_for, fit_module,
                     loss_summary, online_signals, sft_config_of, world_dtype, world_tokenizer,
                     write_pairs)


def _encoded_pairs(pairs: list[dict], tokenizer: Any, max_length: int, source: Any) -> list[dict]:
    seqs = encode_pairs(pairs, tokenizer, max_length)
    if not seqs:
        raise ValueError(f"none of the {len(pairs)} pairs of {source} keeps a response token within max_length = "
                         f"{max_length}; raise CDPOConfig.max_length.")
    return seqs


def _mixed_sft_part(world: World, tokenizer: Any, pad_id: int, sft_cfg: SFTConfig, cfg: CDPOConfig,
                    routed: bool) -> tuple[SFTDataset | None, OnlineExpertSignals | None]:
    """The SFT samples mixed into (C)DPO, with their cached signals or the experts for online ones."""
    if cfg.mix_ratio == 0:
        return None, None
    examples = load_sft_examples(world, tokenizer, sft_cfg.max_length, sft_cfg.domains, sft_cfg.max_examples)
    with_route = routed and cfg.mix_sft_loss == "lm+route"
    online = online_signals(world, sft_cfg, tokenizer, with_route)
    signals, _ = expert_signals_for(world, examples, sft_cfg, pad_id, with_route, online=online is not None)
    return SFTDataset(examples, signals), online


def train_router_cdpo(world: World, cfg: CDPOConfig, sft_dir: str | Path, out_dir: str | Path,
                      pairs_path: str | Path | None = None) -> Path:
    """Stage 2: CDPO of the SFT router (head frozen) mixed with SFT samples. Pairs: `pairs_path` if given, else
    built per cfg.pairs (sampled from the SFT system, or read from cfg.pairs.path)."""
    cfg.validate()
    sft_dir, out_dir = Path(sft_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, verbose=False)
    sft_cfg = sft_config_of(sft_dir)
    tokenizer, pad_id = world_tokenizer(world)
    if pairs_path is None:
        pairs_path = build_router_pairs(world, cfg.pairs, sft_dir, out_dir, cfg.seed, cfg.accelerator)
    pairs = read_jsonl(pairs_path)
    device = device_of(cfg.accelerator)
    router = RouterModel.from_pretrained(sft_dir, dtype=torch.float32).to(device)
    seqs = _encoded_pairs(pairs, tokenizer, cfg.max_length, pairs_path)
    tables = precompute_pair_tables(router, list(world.experts.values()), seqs, cfg.form,
                                    batch_size=cfg.precompute_batch_size, pad_id=pad_id, device=device,
                                    dtype=world_dtype(world), max_gb=cfg.max_precompute_gb)
    sft_part, online = _mixed_sft_part(world, tokenizer, pad_id, sft_cfg, cfg, routed=True)
    data = MixedDataset(seqs, tables, sft_part, cfg.mix_ratio, cfg.seed)
    module = RouterCDPO(router, cfg, sft_cfg, stage="router_cdpo", online=online)
    seconds = fit_module(module, data, partial(collate_mixed, pad_id=pad_id), cfg, out_dir, "router_cdpo")
    router.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    atomic_write_json(out_dir / TRAIN_CONFIG, {"cdpo": to_dict(cfg), "sft": to_dict(sft_cfg)})
    choices = torch.cat(tables["choices"]) if tables["choices"] else torch.zeros(0, dtype=torch.long)
    share = torch.bincount(choices, minlength=len(world.experts)).float() / max(len(choices), 1)
    atomic_write_json(out_dir / METRICS, {
        "stage": "router_cdpo", "form": cfg.form, "steps": module.global_steps, "seconds": seconds,
        "pairs": data.n_pairs, "pairs_dropped_by_max_length": len(pairs) - data.n_pairs,
        "sft_samples": len(data) - data.n_pairs, "pairs_path": str(pairs_path),
        "pair_routing_share": dict(zip(world.expert_names, share.tolist())), **loss_summary(module.history)})
    return out_dir


def train_finetuned(world: World, sft_cfg: SFTConfig, cdpo_cfg: CDPOConfig, out_dir: str | Path,
                    pairs_path: str | Path | None = None) -> Path:
    """Direct fine-tuning baseline: LM-only SFT of world.router_init on world.sft_data, then plain DPO mixed with SFT
    samples, on pairs sampled from the fine-tuned model itself (or `pairs_path`). Saved as a plain LM."""
    from transformers import AutoModelForCausalLM

    sft_cfg.validate()
    cdpo_cfg.validate()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(sft_cfg.seed, verbose=False)
    tokenizer, pad_id = world_tokenizer(world)
    lm = AutoModelForCausalLM.from_pretrained(world.router_init, dtype=torch.float32)
    examples = load_sft_examples(world, tokenizer, sft_cfg.max_length, sft_cfg.domains, sft_cfg.max_examples)
    sft_module = RouterSFT(lm, sft_cfg, stage="finetuned_sft")
    sft_seconds = fit_module(sft_module, SFTDataset(examples), partial(collate_sft, pad_id=pad_id), sft_cfg, out_dir,
                       "finetuned_sft")
    device = device_of(cdpo_cfg.accelerator)
    lm.to(device).eval()
    if pairs_path is None:
        if cdpo_cfg.pairs.source == "file":
            pairs, log = load_preference_pairs(cdpo_cfg.pairs), []
        else:
            pairs, log = sample_world_pairs(world, cdpo_cfg.pairs, single_model_engine(lm, tokenizer), tokenizer,
                                            cdpo_cfg.seed, cdpo_cfg.pairs.batch_size)
        write_pairs(out_dir, pairs, log, "finetuned_pairs")
        pairs_path = out_dir / PAIRS_FILE
    pairs = read_jsonl(pairs_path)
    seqs = _encoded_pairs(pairs, tokenizer, cdpo_cfg.max_length, pairs_path)
    tables = precompute_pair_tables(lm, [], seqs, "plain", batch_size=cdpo_cfg.precompute_batch_size, pad_id=pad_id,
                                    device=device)
    data = MixedDataset(seqs, tables, _mixed_sft_part(world, tokenizer, pad_id, sft_cfg, cdpo_cfg, routed=False)[0],
                        cdpo_cfg.mix_ratio, cdpo_cfg.seed)
    dpo_module = RouterCDPO(lm, cdpo_cfg, sft_cfg, form="plain", stage="finetuned_dpo")
    dpo_seconds = fit_module(dpo_module, data, partial(collate_mixed, pad_id=pad_id), cdpo_cfg, out_dir, "finetuned_dpo")
    lm.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    atomic_write_json(out_dir / TRAIN_CONFIG, {"sft": to_dict(sft_cfg), "dpo": to_dict(cdpo_cfg)})
    atomic_write_json(out_dir / METRICS, {
        "stage": "finetuned", "sft_steps": sft_module.global_steps, "dpo_steps": dpo_module.global_steps,
        "seconds": sft_seconds + dpo_seconds, "examples": len(examples), "pairs": data.n_pairs,
        "pairs_path": str(pairs_path),
        **{f"sft_{k}": v for k, v in loss_summary(sft_module.history).items()},
        **{f"dpo_{k}": v for k, v in loss_summary(dpo_module.history).items()}})
    return out_dir


def train_finetuned_from_config(world: World, cfg: FinetuneConfig, out_dir: str | Path,
                                pairs_path: str | Path | None = None) -> Path:
    """`train_finetuned` from one FinetuneConfig: Lightning device keys copied into both stages; pairs_from=given
    requires `pairs_path`, pairs_from=self ignores it."""
    cfg.validate()
    shared = {"devices": cfg.devices, "strategy": cfg.strategy, "num_nodes": cfg.num_nodes}
    sft, dpo = dataclasses.replace(cfg.sft, **shared), dataclasses.replace(cfg.dpo, **shared)
    if cfg.pairs_from == "given" and pairs_path is None:
        raise ValueError("FinetuneConfig.pairs_from = 'given' needs pairs_path (the pref_pairs artifact's pairs.jsonl).")
    return train_finetuned(world, sft, dpo, out_dir, pairs_path if cfg.pairs_from == "given" else None)
