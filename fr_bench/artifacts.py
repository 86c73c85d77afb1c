"""Artifact registry: every trained thing a method can need, its config schema, its dependencies and its builder.

An artifact is built once per (world, config, seed, dependencies, code) and cached at
`$FR_BENCH_CACHE/artifacts/<key>/`; methods name the artifacts they need, so the SFT-only ablation and full
FusionRoute share one SFT router. A builder registers itself where it is defined, with `@register_artifact(...)`
(`fr_bench.training.artifacts`, `baselines`, or a plug-in); it is a thin adapter to a stage function and receives a
scratch folder that becomes the artifact only if it returns normally.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .registry import Registry
from .world import World

Builder = Callable[[World, Any, dict[str, Path], Path, int], None]


@dataclass(frozen=True)
class ArtifactDef:
    name: str
    deps: tuple[str, ...]
    config: type | None           # the config dataclass its YAML settings are checked against (None: no settings)
    builder: Builder              # (world, cfg, deps, out_dir, seed) -> None
    seeded: bool = True           # False: the build is deterministic and shared by every seed
    description: str = ""
    # (dependency, config field, value): the dependency exists only when the config field has that value
    conditional_deps: tuple[tuple[str, str, Any], ...] = ()

    def deps_for(self, cfg: Any) -> tuple[str, ...]:
        extra = tuple(d for d, key, value in self.conditional_deps if getattr(cfg, key, None) == value)
        return self.deps + extra

    def config_class(self) -> type | None:
        return self.config

    def build(self, world: World, cfg: Any, deps: dict[str, Path], out_dir: Path, seed: int) -> None:
        self.builder(world, cfg, deps, out_dir, seed)


ARTIFACTS: Registry[ArtifactDef] = Registry("artifact")


def register_artifact(name: str, *, deps: tuple[str, ...] = (), config: type | None = None, seeded: bool = True,
                      description: str = "", conditional_deps: tuple[tuple[str, str, Any], ...] = ()
                      ) -> Callable[[Builder], Builder]:
    """Decorator on a builder function: register it as artifact `name` (its config class, dependencies, seeding)."""
    def deco(builder: Builder) -> Builder:
        ARTIFACTS.add(name, ArtifactDef(name, tuple(deps), config, builder, seeded, description,
                                        tuple(conditional_deps)), defined_at=builder)
        return builder

    return deco


def get_artifact(name: str) -> ArtifactDef:
    return ARTIFACTS.get(name)


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
