"""Stage entry points: world + config in, a checkpoint folder out (weights, train_config.json, metrics.json, CSV logs).

These functions hold no caching policy: the caller (the sweep's artifact builders) picks `out_dir`, usually a scratch
folder inside `fr_bench.cache.atomic_dir`, so a stage that raises (e.g. the NaN guard) leaves nothing cached. The
only cache used here is the expert-signal table, which is a pure function of the experts and the tokenized data.
"""
from __future__ import annotations

import dataclasses
import json
import time
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

from ..cache import atomic_write_json, atomic_write_jsonl
from ..config import to_dict
from ..models.expert_pool import ExpertPool
from ..models.loading import freeze, torch_dtype
from ..models.router import RouterModel
from ..world import World
from .cdpo import MixedDataset, RouterCDPO, collate_mixed, encode_pairs, precompute_pair_tables
from .configs import CDPOConfig, FinetuneConfig, PairsConfig, SFTConfig
from .data import read_jsonl
from .expert_signals import OnlineExpertSignals, load_or_compute_signals, open_frozen
from .guards import NonFiniteLossGuard
from .preferences import fusionroute_engine, load_preference_pairs, sample_world_pairs, single_model_engine
from .sft import RouterSFT, SFTDataset, collate_sft, load_sft_examples

TRAIN_CONFIG = "train_config.json"
METRICS = "metrics.json"
PAIRS = "pairs.jsonl"
SAMPLES = "pair_samples.jsonl"


def _device(accelerator: str) -> torch.device:
    """Where the one-off frozen-model passes run (signals, reference log-probs, pair sampling)."""
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def _world_dtype(world: World) -> torch.dtype:
    return torch_dtype(world.dtype)


def _tokenizer(world: World) -> tuple[Any, int]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(world.tokenizer)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    return tok, 0 if pad is None else pad


def _fit(module: L.LightningModule, data: Dataset, collate: Any, cfg: SFTConfig | CDPOConfig, out_dir: Path,
         stage: str) -> float:
    """Seeded shuffled loader, a Trainer with the NaN guard and CSV logs under out_dir/logs/<stage>; returns seconds."""
    if len(data) == 0:
        raise ValueError(f"stage '{stage}': the training set is empty.")
    loader = DataLoader(data, batch_size=cfg.batch_size, shuffle=True, collate_fn=collate, num_workers=0,
                        generator=torch.Generator().manual_seed(cfg.seed))
    trainer = L.Trainer(
        max_epochs=cfg.epochs if cfg.epochs >= 1 else -1, max_steps=cfg.max_steps, accelerator=cfg.accelerator,
        devices=cfg.devices, strategy=cfg.strategy, num_nodes=cfg.num_nodes, precision=cfg.precision,
        accumulate_grad_batches=cfg.grad_accum, gradient_clip_val=cfg.grad_clip or None,
        logger=L.pytorch.loggers.CSVLogger(str(out_dir), name="logs", version=stage),
        callbacks=[NonFiniteLossGuard(stage)], log_every_n_steps=cfg.log_every_n_steps, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    start = time.perf_counter()
    module.train()  # from_pretrained models come in eval mode; Lightning keeps module modes as they are
    trainer.fit(module, loader)
    module.global_steps = trainer.global_step
    return time.perf_counter() - start


def _loss_summary(history: list[dict[str, float]], window: int = 10) -> dict[str, float]:
    """Mean of each logged loss over its first and last batches (`window`, at most a third of them)."""
    out: dict[str, float] = {}
    for key in sorted({k for h in history for k in h}):
        values = [h[key] for h in history if key in h]
        w = max(1, min(window, len(values) // 3))
        out[f"{key}_first"] = sum(values[:w]) / w
        out[f"{key}_last"] = sum(values[-w:]) / w
    return out


def _online(world: World, cfg: SFTConfig, tokenizer: Any, with_route: bool) -> OnlineExpertSignals | None:
    """The experts in memory for per-batch signals when `cfg.signals_online` says so (else None: the cache)."""
    if not with_route or cfg.lambda_route == 0 or not cfg.signals_online(len(tokenizer)):
        return None
    experts = [open_frozen(path, torch.device("cpu"), _world_dtype(world)) for path in world.experts.values()]
    return OnlineExpertSignals(experts, vocab=cfg.needs_vocab_signal, topk=cfg.route_vocab_topk)


def _signals(world: World, examples: list[dict], cfg: SFTConfig, pad_id: int, with_route: bool,
             online: bool = False):
    if not with_route or cfg.lambda_route == 0:
        return None, {}
    if online:
        return None, {"expert_signals": "online"}
    table, folder, hit = load_or_compute_signals(
        world.experts, examples, vocab=cfg.needs_vocab_signal, topk=cfg.route_vocab_topk,
        batch_size=cfg.signal_batch_size, pad_id=pad_id, device=_device(cfg.accelerator), dtype=_world_dtype(world))
    return table, {"expert_signals": "cache", "signal_cache": str(folder), "signal_cache_hit": hit, **table.stats()}


def train_router_sft(world: World, cfg: SFTConfig, out_dir: str | Path) -> Path:
    """Stage 1: RouterModel.from_lm(world.router_init) trained on world.sft_data with L_LM + lambda * L_route."""
    cfg.validate()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, verbose=False)
    tokenizer, pad_id = _tokenizer(world)
    examples = load_sft_examples(world, tokenizer, cfg.max_length, cfg.domains, cfg.max_examples)
    online = _online(world, cfg, tokenizer, with_route=True)
    signals, signal_info = _signals(world, examples, cfg, pad_id, with_route=True, online=online is not None)
    router = RouterModel.from_lm(world.router_init, world.expert_names, dtype=torch.float32)
    module = RouterSFT(router, cfg, stage="router_sft", online=online)
    seconds = _fit(module, SFTDataset(examples, signals), partial(collate_sft, pad_id=pad_id), cfg, out_dir,
                   "router_sft")
    router.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    atomic_write_json(out_dir / TRAIN_CONFIG, to_dict(cfg))
    atomic_write_json(out_dir / METRICS, {"stage": "router_sft", "steps": module.global_steps, "seconds": seconds,
                                          "examples": len(examples), **signal_info, **_loss_summary(module.history)})
    return out_dir


def _sft_config_of(sft_dir: Path) -> SFTConfig:
    path = sft_dir / TRAIN_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{sft_dir} has no {TRAIN_CONFIG}; pass the folder written by train_router_sft.")
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SFTConfig), json.loads(path.read_text())))


def build_router_pairs(world: World, cfg: PairsConfig, sft_dir: str | Path, out_dir: str | Path,
                       seed: int = 0, accelerator: str = "auto") -> Path:
    """Preference pairs from the SFT-stage FusionRoute system (or from cfg.path): out_dir/pairs.jsonl + samples log."""
    cfg.validate()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.source == "file":
        pairs, log = load_preference_pairs(cfg), []
    else:
        tokenizer, _ = _tokenizer(world)
        device = _device(accelerator)
        router = freeze(RouterModel.from_pretrained(sft_dir, dtype=_world_dtype(world)).to(device))
        pool = ExpertPool.load(world.experts, world.tokenizer, world.dtype, device,
                               vocab_size=router.config.vocab_size)
        pairs, log = sample_world_pairs(world, cfg, fusionroute_engine(router, pool.models, tokenizer), tokenizer,
                                        seed, cfg.batch_size)
    _write_pairs(out_dir, pairs, log, "router_pairs")
    return out_dir / PAIRS


def _write_pairs(out_dir: Path, pairs: list[dict], log: list[dict], stage: str) -> None:
    atomic_write_jsonl(out_dir / PAIRS, pairs)
    if log:
        atomic_write_jsonl(out_dir / SAMPLES, log)
    sampled = len(log)
    atomic_write_json(out_dir / f"{stage}_metrics.json", {
        "pairs": len(pairs), "samples": sampled,
        "sample_accuracy": sum(r["correct"] for r in log) / sampled if sampled else None,
        "gold_chosen": sum(p.get("chosen_source") == "gold" for p in pairs)})
    if not pairs:
        raise ValueError(f"stage '{stage}': no preference pair (every prompt's samples were all correct or all "
                         "incorrect). Raise pairs.n_samples or pairs.temperature, or set pairs.gold_as_chosen=true.")


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
    online = _online(world, sft_cfg, tokenizer, with_route)
    signals, _ = _signals(world, examples, sft_cfg, pad_id, with_route, online=online is not None)
    return SFTDataset(examples, signals), online


def train_router_cdpo(world: World, cfg: CDPOConfig, sft_dir: str | Path, out_dir: str | Path,
                      pairs_path: str | Path | None = None) -> Path:
    """Stage 2: CDPO of the SFT router (head frozen) mixed with SFT samples. Pairs: `pairs_path` if given, else
    built per cfg.pairs (sampled from the SFT system, or read from cfg.pairs.path)."""
    cfg.validate()
    sft_dir, out_dir = Path(sft_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, verbose=False)
    sft_cfg = _sft_config_of(sft_dir)
    tokenizer, pad_id = _tokenizer(world)
    if pairs_path is None:
        pairs_path = build_router_pairs(world, cfg.pairs, sft_dir, out_dir, cfg.seed, cfg.accelerator)
    pairs = read_jsonl(pairs_path)
    device = _device(cfg.accelerator)
    router = RouterModel.from_pretrained(sft_dir, dtype=torch.float32).to(device)
    seqs = _encoded_pairs(pairs, tokenizer, cfg.max_length, pairs_path)
    tables = precompute_pair_tables(router, list(world.experts.values()), seqs, cfg.form,
                                    batch_size=cfg.precompute_batch_size, pad_id=pad_id, device=device,
                                    dtype=_world_dtype(world), max_gb=cfg.max_precompute_gb)
    sft_part, online = _mixed_sft_part(world, tokenizer, pad_id, sft_cfg, cfg, routed=True)
    data = MixedDataset(seqs, tables, sft_part, cfg.mix_ratio, cfg.seed)
    module = RouterCDPO(router, cfg, sft_cfg, stage="router_cdpo", online=online)
    seconds = _fit(module, data, partial(collate_mixed, pad_id=pad_id), cfg, out_dir, "router_cdpo")
    router.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    atomic_write_json(out_dir / TRAIN_CONFIG, {"cdpo": to_dict(cfg), "sft": to_dict(sft_cfg)})
    choices = torch.cat(tables["choices"]) if tables["choices"] else torch.zeros(0, dtype=torch.long)
    share = torch.bincount(choices, minlength=len(world.experts)).float() / max(len(choices), 1)
    atomic_write_json(out_dir / METRICS, {
        "stage": "router_cdpo", "form": cfg.form, "steps": module.global_steps, "seconds": seconds,
        "pairs": data.n_pairs, "pairs_dropped_by_max_length": len(pairs) - data.n_pairs,
        "sft_samples": len(data) - data.n_pairs, "pairs_path": str(pairs_path),
        "pair_routing_share": dict(zip(world.expert_names, share.tolist())), **_loss_summary(module.history)})
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
    tokenizer, pad_id = _tokenizer(world)
    lm = AutoModelForCausalLM.from_pretrained(world.router_init, dtype=torch.float32)
    examples = load_sft_examples(world, tokenizer, sft_cfg.max_length, sft_cfg.domains, sft_cfg.max_examples)
    sft_module = RouterSFT(lm, sft_cfg, stage="finetuned_sft")
    sft_seconds = _fit(sft_module, SFTDataset(examples), partial(collate_sft, pad_id=pad_id), sft_cfg, out_dir,
                       "finetuned_sft")
    device = _device(cdpo_cfg.accelerator)
    lm.to(device).eval()
    if pairs_path is None:
        if cdpo_cfg.pairs.source == "file":
            pairs, log = load_preference_pairs(cdpo_cfg.pairs), []
        else:
            pairs, log = sample_world_pairs(world, cdpo_cfg.pairs, single_model_engine(lm, tokenizer), tokenizer,
                                            cdpo_cfg.seed, cdpo_cfg.pairs.batch_size)
        _write_pairs(out_dir, pairs, log, "finetuned_pairs")
        pairs_path = out_dir / PAIRS
    pairs = read_jsonl(pairs_path)
    seqs = _encoded_pairs(pairs, tokenizer, cdpo_cfg.max_length, pairs_path)
    tables = precompute_pair_tables(lm, [], seqs, "plain", batch_size=cdpo_cfg.precompute_batch_size, pad_id=pad_id,
                                    device=device)
    data = MixedDataset(seqs, tables, _mixed_sft_part(world, tokenizer, pad_id, sft_cfg, cdpo_cfg, routed=False)[0],
                        cdpo_cfg.mix_ratio, cdpo_cfg.seed)
    dpo_module = RouterCDPO(lm, cdpo_cfg, sft_cfg, form="plain", stage="finetuned_dpo")
    dpo_seconds = _fit(dpo_module, data, partial(collate_mixed, pad_id=pad_id), cdpo_cfg, out_dir, "finetuned_dpo")
    lm.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    atomic_write_json(out_dir / TRAIN_CONFIG, {"sft": to_dict(sft_cfg), "dpo": to_dict(cdpo_cfg)})
    atomic_write_json(out_dir / METRICS, {
        "stage": "finetuned", "sft_steps": sft_module.global_steps, "dpo_steps": dpo_module.global_steps,
        "seconds": sft_seconds + dpo_seconds, "examples": len(examples), "pairs": data.n_pairs,
        "pairs_path": str(pairs_path),
        **{f"sft_{k}": v for k, v in _loss_summary(sft_module.history).items()},
        **{f"dpo_{k}": v for k, v in _loss_summary(dpo_module.history).items()}})
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
