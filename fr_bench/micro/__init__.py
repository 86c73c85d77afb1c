"""The micro world: tiny Llama models trained from scratch on generated tasks in the paper's three expert domains
(math, code, instruction following) plus a general one, in the real benchmarks' schemas and scored by their real
scorers. `build_micro_world(cfg)` returns a `fr_bench.world.World`; `python -m fr_bench.micro build CONFIG` also
prints the specialisation table (every model on every domain)."""
from __future__ import annotations

from typing import Any

__all__ = ["MicroConfig", "build_micro_world"]


def __getattr__(name: str) -> Any:  # keep `import fr_bench.micro` free of torch / transformers imports
    if name == "build_micro_world":
        from .build import build_micro_world

        return build_micro_world
    if name == "MicroConfig":
        from .config import MicroConfig

        return MicroConfig
    raise AttributeError(name)
