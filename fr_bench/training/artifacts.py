"""The training artifacts of FusionRoute and the direct fine-tuning baseline, registered with the artifact registry.

Every builder has one signature, `(world, cfg, deps, out_dir, seed)`: `deps` maps dependency names to their built
folders, `out_dir` is a scratch folder that becomes the artifact only if the builder returns. Seeds are written
into the stage configs here, so the stage functions stay free of sweep concerns. The stage code is imported when a
build starts, so registering (and planning) stays light.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..artifacts import register_artifact
from ..world import World
from .configs import CDPOConfig, FinetuneConfig, PairsConfig, SFTConfig
from .data import PAIRS_FILE



def _seeded(cfg: Any, seed: int) -> Any:
    return dataclasses.replace(cfg, seed=seed) if hasattr(cfg, "seed") else cfg


@register_artifact("router_sft", config=SFTConfig,
                   description="router LM + routing head after SFT (LM loss + λ·routing loss)")
def router_sft(world: World, cfg: Any, deps: dict[str, Path], out_dir: Path, seed: int) -> None:
    from .stages import train_router_sft

    train_router_sft(world, _seeded(cfg, seed), out_dir)


@register_artifact("pref_pairs", deps=("router_sft",), config=PairsConfig,
                   description="preference pairs sampled from the SFT-stage system, labelled by the verifiers")
def pref_pairs(world: World, cfg: Any, deps: dict[str, Path], out_dir: Path, seed: int) -> None:
    from .stages import build_router_pairs

    build_router_pairs(world, cfg, deps["router_sft"], out_dir, seed)


@register_artifact("router_cdpo", deps=("router_sft", "pref_pairs"), config=CDPOConfig,
                   description="router after CDPO mixed with SFT")
def router_cdpo(world: World, cfg: Any, deps: dict[str, Path], out_dir: Path, seed: int) -> None:
    from .preference_stages import train_router_cdpo

    train_router_cdpo(world, _seeded(cfg, seed), deps["router_sft"], out_dir,
                      pairs_path=deps["pref_pairs"] / PAIRS_FILE)


@register_artifact("finetuned", config=FinetuneConfig, conditional_deps=(("pref_pairs", "pairs_from", "given"),),
                   description="direct fine-tuning baseline: same init, same SFT then DPO recipe, no routing")
def finetuned(world: World, cfg: Any, deps: dict[str, Path], out_dir: Path, seed: int) -> None:
    from .preference_stages import train_finetuned_from_config

    cfg = dataclasses.replace(cfg, sft=_seeded(cfg.sft, seed), dpo=_seeded(cfg.dpo, seed))
    pairs = deps["pref_pairs"] / PAIRS_FILE if "pref_pairs" in deps else None
    train_finetuned_from_config(world, cfg, out_dir, pairs_path=pairs)
