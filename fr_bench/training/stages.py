"""Stage entry points of SFT and preference pairs (CDPO and the fine-tuned baseline: `preference_stages`): world +
config in, a checkpoint folder out (weights, train_config.json, metrics.json, CSV logs). The split keeps the SFT
router's code apart from CDPO's, so the sweep's code fingerprints rebuild only what an edit touches.

These functions hold no caching policy: the caller (the sweep's artifact builders) picks `out_dir`, usually a scratch
folder inside `fr_bench.cache.atomic_dir`, so a stage that raises (e.g. the NaN guard) leaves nothing cached. The
only cache used here is the expert-signal table, which is a pure function of the experts and the tokenized data.
"""
from __future__ import annotations

import json
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
from .configs import CDPOConfig, PairsConfig, SFTConfig
from .data import PAIRS_FILE, SFTDataset
from .expert_signals import OnlineExpertSignals, load_or_compute_signals, open_frozen
from .harness import fit
from .preferences import fusionroute_engine, load_preference_pairs, sample_world_pairs
from .sft import RouterSFT, collate_sft, load_sft_examples

TRAIN_CONFIG = "train_config.json"
METRICS = "metrics.json"
SAMPLES = "pair_samples.jsonl"


def device_of(accelerator: str) -> torch.device:
    """Where the one-off frozen-model passes run (signals, reference log-probs, pair sampling)."""
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def world_dtype(world: World) -> torch.dtype:
    return torch_dtype(world.dtype)


def world_tokenizer(world: World) -> tuple[Any, int]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(world.tokenizer)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    return tok, 0 if pad is None else pad


def fit_module(module: L.LightningModule, data: Dataset, collate: Any, cfg: SFTConfig | CDPOConfig, out_dir: Path,
               stage: str) -> float:
    """A router stage's run through `harness.fit`: a seeded shuffled loader, CSV logs under out_dir/logs/<stage>;
    returns seconds and sets `module.global_steps`."""
    if len(data) == 0:
        raise ValueError(f"stage '{stage}': the training set is empty.")
    loader = DataLoader(data, batch_size=cfg.batch_size, shuffle=True, collate_fn=collate, num_workers=0,
                        generator=torch.Generator().manual_seed(cfg.seed))
    run = fit(module, loader, stage=stage, log_dir=out_dir, name="logs", version=stage, max_steps=cfg.max_steps,
              epochs=cfg.epochs, accelerator=cfg.accelerator, devices=cfg.devices, strategy=cfg.strategy,
              num_nodes=cfg.num_nodes, precision=cfg.precision, grad_accum=cfg.grad_accum, grad_clip=cfg.grad_clip,
              log_every_n_steps=cfg.log_every_n_steps)
    module.global_steps = run.steps
    return run.seconds


def loss_summary(history: list[dict[str, float]], window: int = 10) -> dict[str, float]:
    """Mean of each logged loss over its first and last batches (`window`, at most a third of them)."""
    out: dict[str, float] = {}
    for key in sorted({k for h in history for k in h}):
        values = [h[key] for h in history if key in h]
        w = max(1, min(window, len(values) // 3))
        out[f"{key}_first"] = sum(values[:w]) / w
        out[f"{key}_last"] = sum(values[-w:]) / w
    return out


def online_signals(world: World, cfg: SFTConfig, tokenizer: Any, with_route: bool) -> OnlineExpertSignals | None:
    """The experts in memory for per-batch signals when `cfg.signals_online` says so (else None: the cache)."""
    if not with_route or cfg.lambda_route == 0 or not cfg.signals_online(len(tokenizer)):
        return None
    experts = [open_frozen(path, torch.device("cpu"), world_dtype(world)) for path in world.experts.values()]
    return OnlineExpertSignals(experts, vocab=cfg.needs_vocab_signal, topk=cfg.route_vocab_topk)


def expert_signals_for(world: World, examples: list[dict], cfg: SFTConfig, pad_id: int, with_route: bool,
                       online: bool = False):
    if not with_route or cfg.lambda_route == 0:
        return None, {}
    if online:
        return None, {"expert_signals": "online"}
    table, folder, hit = load_or_compute_signals(
        world.experts, examples, vocab=cfg.needs_vocab_signal, topk=cfg.route_vocab_topk,
        batch_size=cfg.signal_batch_size, pad_id=pad_id, device=device_of(cfg.accelerator), dtype=world_dtype(world))
    return table, {"expert_signals": "cache", "signal_cache": str(folder), "signal_cache_hit": hit, **table.stats()}


def train_router_sft(world: World, cfg: SFTConfig, out_dir: str | Path) -> Path:
    """Stage 1: RouterModel.from_lm(world.router_init) trained on world.sft_data with L_LM + lambda * L_route."""
    cfg.validate()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, verbose=False)
    tokenizer, pad_id = world_tokenizer(world)
    examples = load_sft_examples(world, tokenizer, cfg.max_length, cfg.domains, cfg.max_examples)
    online = online_signals(world, cfg, tokenizer, with_route=True)
    signals, signal_info = expert_signals_for(world, examples, cfg, pad_id, with_route=True, online=online is not None)
    router = RouterModel.from_lm(world.router_init, world.expert_names, dtype=torch.float32)
    module = RouterSFT(router, cfg, stage="router_sft", online=online)
    seconds = fit_module(module, SFTDataset(examples, signals), partial(collate_sft, pad_id=pad_id), cfg, out_dir,
                   "router_sft")
    router.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    atomic_write_json(out_dir / TRAIN_CONFIG, to_dict(cfg))
    atomic_write_json(out_dir / METRICS, {"stage": "router_sft", "steps": module.global_steps, "seconds": seconds,
                                          "examples": len(examples), **signal_info, **loss_summary(module.history)})
    return out_dir


def sft_config_of(sft_dir: Path) -> SFTConfig:
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
        tokenizer, _ = world_tokenizer(world)
        device = device_of(accelerator)
        router = freeze(RouterModel.from_pretrained(sft_dir, dtype=world_dtype(world)).to(device))
        pool = ExpertPool.load(world.experts, world.tokenizer, world.dtype, device,
                               vocab_size=router.config.vocab_size)
        pairs, log = sample_world_pairs(world, cfg, fusionroute_engine(router, pool.models, tokenizer), tokenizer,
                                        seed, cfg.batch_size)
    write_pairs(out_dir, pairs, log, "router_pairs")
    return out_dir / PAIRS_FILE


def write_pairs(out_dir: Path, pairs: list[dict], log: list[dict], stage: str) -> None:
    atomic_write_jsonl(out_dir / PAIRS_FILE, pairs)
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


