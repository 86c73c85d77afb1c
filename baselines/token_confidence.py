"""Confidence routing (method `token_confidence`), not Collab: every expert proposes a next-token distribution each
step and the most confident one decides the token. No reward model, no rollouts; the paper's Collab baseline is
method `collab` (`baselines/collab.py`).

A reference point for FusionRoute's learned routing: same experts, same engine, no router and no training.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fr_bench.decoding.engine import DecodeEngine
from fr_bench.decoding.method import DecodeOptions, EngineMethod
from fr_bench.config import ConfigError
from fr_bench.decoding.policies import CONFIDENCE_CRITERIA, Confidence
from fr_bench.methods import register_method
from fr_bench.models.expert_pool import ExpertPool


@dataclass
class TokenConfidenceOptions(DecodeOptions):
    criterion: str = "max_prob"        # max_prob: highest top-token probability | entropy: lowest entropy


@register_method("token_confidence")
class TokenConfidenceMethod(EngineMethod):
    options_schema = TokenConfidenceOptions

    def __init__(self, world, options=None, seed: int = 0) -> None:
        super().__init__(world, options, seed)
        if self.cfg.criterion not in CONFIDENCE_CRITERIA:
            raise ConfigError(f"method '{self.name}': criterion '{self.cfg.criterion}' is unknown; use one of "
                              f"{list(CONFIDENCE_CRITERIA)}")

    def load(self, artifacts: dict[str, Path]) -> None:
        pool = ExpertPool.load(self.world.experts, self.world.tokenizer, self.dtype, self.device,
                               self.cfg.attn_implementation)
        policy = Confidence(experts=list(range(len(pool))), criterion=self.cfg.criterion)
        self.engine = DecodeEngine(pool.models, policy, self.tokenizer(), lazy=self.cfg.lazy)
