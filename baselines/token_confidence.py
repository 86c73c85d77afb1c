"""Training-free token-level collaboration (Collab-style, without a reward model): every expert proposes a
next-token distribution each step and the most confident one decides the token.

A reference point for FusionRoute's learned routing: same experts, same engine, no router and no training.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fr_bench.decoding.engine import DecodeEngine
from fr_bench.decoding.method import DecodeOptions, EngineMethod
from fr_bench.decoding.policies import Confidence
from fr_bench.methods import register_method
from fr_bench.models.expert_pool import ExpertPool


@dataclass
class TokenConfidenceOptions(DecodeOptions):
    criterion: str = "max_prob"        # max_prob: highest top-token probability | entropy: lowest entropy


@register_method("token_confidence")
class TokenConfidenceMethod(EngineMethod):
    options_schema = TokenConfidenceOptions

    def load(self, artifacts: dict[str, Path]) -> None:
        pool = ExpertPool.load(self.world.experts, self.world.tokenizer, self.dtype, self.device,
                               self.cfg.attn_implementation)
        policy = Confidence(experts=list(range(len(pool))), criterion=self.cfg.criterion)
        self.engine = DecodeEngine(pool.models, policy, self.tokenizer(), lazy=self.cfg.lazy)
