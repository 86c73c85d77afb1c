"""The frozen expert pool: N causal LMs that share the router's tokenizer, loaded once and never trained.

Vocabulary compatibility is checked for every expert before any weights are read, so a wrong checkpoint fails in
seconds with the expert's name and the differences, not as a shape error (or silent nonsense) mid-decode.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch import nn

from .loading import check_same_vocabulary, checkpoint_location, load_frozen_lm


@dataclass
class ExpertPool:
    names: list[str]
    models: list[nn.Module]
    vocab_size: int

    def __len__(self) -> int:
        return len(self.models)

    def __getitem__(self, name: str) -> nn.Module:
        if name not in self.names:
            raise KeyError(f"no expert '{name}' in the pool; experts: {', '.join(self.names)}")
        return self.models[self.names.index(name)]

    @classmethod
    def load(cls, checkpoints: Mapping[str, str], tokenizer: str, dtype: str = "float32",
             device: str | torch.device = "cpu", attn_implementation: str | None = None,
             vocab_size: int | None = None) -> "ExpertPool":
        """Load `checkpoints` (name -> folder or Hub name), refusing any whose vocabulary differs from `tokenizer`'s.

        `vocab_size`: the logit width the experts must match (the router's `config.vocab_size`); by default the first
        expert's.
        """
        if not checkpoints:
            raise ValueError("the expert pool needs at least one checkpoint (world.experts is empty)")
        locations = {name: checkpoint_location(f"expert '{name}'", path) for name, path in checkpoints.items()}
        for name, location in locations.items():
            vocab_size = check_same_vocabulary(f"expert '{name}'", location, tokenizer, vocab_size)
        models = [load_frozen_lm(f"expert '{name}'", location, dtype, device, attn_implementation)
                  for name, location in locations.items()]
        return cls(names=list(locations), models=models, vocab_size=vocab_size)

    def weight_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for m in self.models for p in m.parameters())
