"""The types every layer shares: what a method is (`Method`), what it returns (`Generation`) and what a scorer
returns (`SampleResult`). Imports nothing else from fr_bench at run time, so decoding, methods, tasks and scoring can
all use it without an import cycle.

A method turns prompts into outputs, after the artifacts it needs have been built: it names them (`requires`); the
sweep builds each artifact once (cached by hash, shared between methods) and hands their folders to `load`. A new
routing idea is one file with a `Method` subclass registered by name, plus one YAML entry.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

if TYPE_CHECKING:  # type-only: the world is a plain dataclass the caller passes in
    from .world import World


@dataclass
class Generation:
    text: str
    token_ids: list[int] = field(default_factory=list)
    expert_choices: list[int] | None = None   # per generated token: index into world.expert_names (routed methods)
    cost_tokens: int = 0                      # tokens run through any model forward (decode cost)

@dataclass
class SampleResult:
    """The score of one output: `metrics` holds this row's value of every task metric (1.0/0.0 or a fraction), or a
    list of values when the metric averages over parts of a row (IFEval's per-instruction accuracy)."""

    id: str
    extracted: Any
    gold: Any
    correct: bool
    metrics: dict[str, float | list[float]]
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "extracted": self.extracted, "gold": self.gold, "correct": self.correct,
                "metrics": self.metrics, **({"details": self.details} if self.details else {})}


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

    def code_objects(self) -> list[object]:
        """What the method's results are computed with, for the sweep's code fingerprint: its class (its module and
        every project module that imports reach). A method that plugs in code chosen by its options (a policy from a
        plug-in) adds it here."""
        return [type(self)]

    @abstractmethod
    def load(self, artifacts: dict[str, Path]) -> None:
        """Load models from the built artifacts (and the world's checkpoints)."""

    @abstractmethod
    def generate(self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str]) -> list[Generation]:
        """Greedy outputs for chat-formatted prompts."""
