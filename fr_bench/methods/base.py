"""What a method is: something that turns prompts into outputs, after the artifacts it needs have been built.

A method names the artifacts it needs (`requires`); the sweep builds each artifact once (cached by hash, shared
between methods) and hands their folders to `load`. A new routing idea is one file with a `Method` subclass
registered by name, plus one YAML entry.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

from ..world import World


@dataclass
class Generation:
    text: str
    token_ids: list[int] = field(default_factory=list)
    expert_choices: list[int] | None = None   # per generated token: index into world.expert_names (routed methods)
    cost_tokens: int = 0                      # tokens run through any model forward (decode cost)


class Method(ABC):
    name: ClassVar[str]
    options: dict[str, Any]

    def __init__(self, world: World, options: dict[str, Any] | None = None, seed: int = 0) -> None:
        self.world = world
        self.options = dict(options or {})
        self.seed = seed

    def requires(self) -> list[str]:
        """Names of artifacts (see `fr_bench.artifacts`) this method needs built before `load`."""
        return []

    @abstractmethod
    def load(self, artifacts: dict[str, Path]) -> None:
        """Load models from the built artifacts (and the world's checkpoints)."""

    @abstractmethod
    def generate(self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str]) -> list[Generation]:
        """Greedy outputs for chat-formatted prompts."""
