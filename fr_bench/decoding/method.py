"""The part every engine-decoded method shares: decode options, the world's tokenizer, and `generate` via the engine.

A token-level method is then only `load` (which models, which policy) plus its own options dataclass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..config import ConfigError, load_config
from ..types import Generation, Method
from .engine import DecodeEngine, DecodeStats


@dataclass
class DecodeOptions:
    batch_size: int = 8                   # prompts decoded together (left-padded)
    dtype: str | None = None              # float32 | bfloat16 | float16; None = world.dtype
    device: str = "auto"                  # auto = cuda when available, else cpu
    attn_implementation: str | None = None  # None = the family's transformers default (sdpa; eager for Gemma-2)
    temperature: float = 0.0              # 0 = greedy (the paper); > 0 samples with a generator seeded by the run seed
    lazy: bool = True                     # False = naive reference: every model runs every step


def parse_options(schema: type, method: str, options: dict[str, Any]) -> Any:
    try:
        return load_config(schema, extra=options)
    except ConfigError as err:
        raise ConfigError(f"options of method '{method}': {err}") from err


def resolve_device(device: str) -> str:
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


class EngineMethod(Method):
    """A `Method` whose `load` builds `self.engine`; generation, batching and stop strings are the engine's."""

    options_schema: type = DecodeOptions
    engine: DecodeEngine
    last_stats: DecodeStats | None = None

    def __init__(self, world: Any, options: dict[str, Any] | None = None, seed: int = 0) -> None:
        super().__init__(world, options, seed)
        self.cfg = parse_options(self.options_schema, self.name, self.options)

    @property
    def dtype(self) -> str:
        return self.cfg.dtype or self.world.dtype

    @property
    def device(self) -> str:
        return resolve_device(self.cfg.device)

    def tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.world.tokenizer)

    def generate(self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str]) -> list[Generation]:
        outputs, self.last_stats = self.engine.generate(prompts, max_new_tokens, stop, batch_size=self.cfg.batch_size,
                                                        temperature=self.cfg.temperature, seed=self.seed)
        return [o.to_generation() for o in outputs]
