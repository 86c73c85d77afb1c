"""One model decoding alone through the engine: a domain expert or the common base.

`model: base` decodes `world.base`, `model: <expert name>` that expert (the sweep's `expert_math` etc. are entries
pointing here).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fr_bench.config import ConfigError
from fr_bench.decoding.engine import DecodeEngine
from fr_bench.decoding.method import DecodeOptions, EngineMethod
from fr_bench.decoding.policies import SingleModel
from fr_bench.methods import register_method
from fr_bench.models.expert_pool import ExpertPool


@dataclass
class SingleModelOptions(DecodeOptions):
    model: str = "base"                # base | an expert name in world.experts


@register_method("single_model")
class SingleModelMethod(EngineMethod):
    options_schema = SingleModelOptions

    def checkpoint(self) -> tuple[str, str]:
        """(display name, location) of the model to decode."""
        if self.cfg.model == "base":
            return "base", self.world.base
        if self.cfg.model not in self.world.experts:
            raise ConfigError(f"method '{self.name}': option model='{self.cfg.model}' is neither 'base' nor an expert "
                              f"of this world ({', '.join(self.world.expert_names)})")
        return f"expert '{self.cfg.model}'", self.world.experts[self.cfg.model]

    def load(self, artifacts: dict[str, Path]) -> None:
        name, location = self.checkpoint()
        pool = ExpertPool.load({name: location}, self.world.tokenizer, self.dtype, self.device,
                               self.cfg.attn_implementation)
        self.engine = DecodeEngine(pool.models, SingleModel(0), self.tokenizer(), lazy=self.cfg.lazy)
