"""Adapters from the artifact registry (`fr_bench.artifacts`) to the stage functions that train each artifact.

Every builder has one signature, `(world, cfg, deps, out_dir, seed)`: `deps` maps dependency names to their built
folders, `out_dir` is a scratch folder that becomes the artifact only if the builder returns. Seeds are written
into the stage configs here, so the stage functions stay free of sweep concerns.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..world import World

PAIRS_FILE = "pairs.jsonl"


def _seeded(cfg: Any, seed: int) -> Any:
    return dataclasses.replace(cfg, seed=seed) if hasattr(cfg, "seed") else cfg


def router_sft(world: World, cfg: Any, deps: dict[str, Path], out_dir: Path, seed: int) -> None:
    from ..training.stages import train_router_sft

    train_router_sft(world, _seeded(cfg, seed), out_dir)


def pref_pairs(world: World, cfg: Any, deps: dict[str, Path], out_dir: Path, seed: int) -> None:
    from ..training.stages import build_router_pairs

    build_router_pairs(world, cfg, deps["router_sft"], out_dir, seed)


def router_cdpo(world: World, cfg: Any, deps: dict[str, Path], out_dir: Path, seed: int) -> None:
    from ..training.stages import train_router_cdpo

    train_router_cdpo(world, _seeded(cfg, seed), deps["router_sft"], out_dir,
                      pairs_path=deps["pref_pairs"] / PAIRS_FILE)


def finetuned(world: World, cfg: Any, deps: dict[str, Path], out_dir: Path, seed: int) -> None:
    from ..training.stages import train_finetuned_from_config

    cfg = dataclasses.replace(cfg, sft=_seeded(cfg.sft, seed), dpo=_seeded(cfg.dpo, seed))
    pairs = deps["pref_pairs"] / PAIRS_FILE if "pref_pairs" in deps else None
    train_finetuned_from_config(world, cfg, out_dir, pairs_path=pairs)


def reward_model(world: World, cfg: Any, deps: dict[str, Path], out_dir: Path, seed: int) -> None:
    from baselines.reward_model import train_reward_model, use_pretrained_reward_model

    if cfg.path is not None:
        use_pretrained_reward_model(cfg, out_dir)
    else:
        train_reward_model(world, deps["pref_pairs"] / PAIRS_FILE, cfg, out_dir, seed)


def prompt_router(world: World, cfg: Any, deps: dict[str, Path], out_dir: Path, seed: int) -> None:
    from baselines.prompt_router import train_prompt_router

    train_prompt_router(world, cfg, out_dir, seed)


def _merge(method: str):
    def build(world: World, cfg: Any, deps: dict[str, Path], out_dir: Path, seed: int) -> None:
        from baselines.merging import build_merged_model

        build_merged_model(world.base, list(world.experts.values()), cfg, out_dir, method=method, seed=seed,
                           tokenizer_path=world.tokenizer)

    build.__name__ = f"merge_{method}"
    return build


merge_task_arithmetic = _merge("task_arithmetic")
merge_ties = _merge("ties")
merge_dare = _merge("dare")
