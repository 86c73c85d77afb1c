"""Artifact registry: every trained thing a method can need, its config schema, its dependencies and its builder.

An artifact is built once per (world, config, seed, dependencies) and cached at `$FR_BENCH_CACHE/artifacts/<key>/`;
methods name the artifacts they need, so the SFT-only ablation and full FusionRoute share one SFT router. Builders are
thin adapters to the stage functions in `fr_bench.training` and `baselines`; they receive a scratch folder that
becomes the artifact only if they return normally.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .world import World

Builder = Callable[[World, Any, dict[str, Path], Path, int], None]


@dataclass(frozen=True)
class ArtifactDef:
    name: str
    deps: tuple[str, ...]
    config: str | None            # "module:Class" of the config dataclass (imported lazily)
    builder: str                  # "module:function" with the `Builder` signature
    seeded: bool = True           # False: the build is deterministic and shared by every seed
    description: str = ""
    # (dependency, config field, value): the dependency exists only when the config field has that value
    conditional_deps: tuple[tuple[str, str, Any], ...] = ()

    def deps_for(self, cfg: Any) -> tuple[str, ...]:
        extra = tuple(d for d, key, value in self.conditional_deps if getattr(cfg, key, None) == value)
        return self.deps + extra

    def config_class(self) -> type | None:
        return _import(self.config) if self.config else None

    def build(self, world: World, cfg: Any, deps: dict[str, Path], out_dir: Path, seed: int) -> None:
        _import(self.builder)(world, cfg, deps, out_dir, seed)


def _import(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


ARTIFACTS: dict[str, ArtifactDef] = {}


def register_artifact(defn: ArtifactDef) -> None:
    ARTIFACTS[defn.name] = defn


def get_artifact(name: str) -> ArtifactDef:
    if name not in ARTIFACTS:
        raise KeyError(f"unknown artifact '{name}'; known: {', '.join(sorted(ARTIFACTS))}")
    return ARTIFACTS[name]


def closure(names: list[str], deps_of: Callable[[str], tuple[str, ...]] | None = None) -> list[str]:
    """`names` and everything they depend on, in build (topological) order."""
    order: list[str] = []
    deps_of = deps_of or (lambda n: get_artifact(n).deps)

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in stack:
            raise ValueError(f"artifact dependency cycle: {' -> '.join(stack + (name,))}")
        if name in order:
            return
        for dep in deps_of(name):
            visit(dep, stack + (name,))
        order.append(name)

    for n in names:
        visit(n, ())
    return order


for _defn in (
    ArtifactDef("router_sft", (), "fr_bench.training.configs:SFTConfig", "fr_bench.sweep.builders:router_sft",
                description="router LM + routing head after SFT (LM loss + λ·routing loss)"),
    ArtifactDef("pref_pairs", ("router_sft",), "fr_bench.training.configs:PairsConfig",
                "fr_bench.sweep.builders:pref_pairs",
                description="preference pairs sampled from the SFT-stage system, labelled by the verifiers"),
    ArtifactDef("router_cdpo", ("router_sft", "pref_pairs"), "fr_bench.training.configs:CDPOConfig",
                "fr_bench.sweep.builders:router_cdpo", description="router after CDPO mixed with SFT"),
    ArtifactDef("finetuned", (), "fr_bench.training.configs:FinetuneConfig", "fr_bench.sweep.builders:finetuned",
                conditional_deps=(("pref_pairs", "pairs_from", "given"),),
                description="direct fine-tuning baseline: same init, same SFT then DPO recipe, no routing"),
    ArtifactDef("reward_model", (), "baselines.reward_model:RewardModelConfig",
                "fr_bench.sweep.builders:reward_model", conditional_deps=(("pref_pairs", "path", None),),
                description="Bradley-Terry reward model on CDPO's pairs, or a pretrained one (path)"),
    ArtifactDef("prompt_router", (), "baselines.prompt_router:PromptRouterConfig",
                "fr_bench.sweep.builders:prompt_router", description="sequence-level prompt classifier"),
    ArtifactDef("merge_task_arithmetic", (), "baselines.merging:MergeConfig", "fr_bench.sweep.builders:merge_task_arithmetic",
                seeded=False, description="task arithmetic merge of the experts"),
    ArtifactDef("merge_ties", (), "baselines.merging:MergeConfig", "fr_bench.sweep.builders:merge_ties",
                seeded=False, description="TIES merge of the experts"),
    ArtifactDef("merge_dare", (), "baselines.merging:MergeConfig", "fr_bench.sweep.builders:merge_dare",
                description="DARE merge of the experts (random drop mask: seeded)"),
):
    register_artifact(_defn)
