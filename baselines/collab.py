"""Collab, the paper's token-level baseline: per step, top-k candidates of each expert, short greedy rollouts by the
same expert, scored by the reward model; the best candidate is kept (`fr_bench/decoding/collab.py`).

It uses the `reward_model` artifact Sequence Selection uses (trained on CDPO's pairs, or a pretrained one from
`artifacts.reward_model.path`). The reward model reads the engine's token ids with a KV cache, so it must share the
experts' tokenizer; Sequence Selection, which re-tokenizes text, accepts any.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fr_bench.config import ConfigError
from fr_bench.decoding.collab import Collab, RewardHeadLM
from fr_bench.decoding.engine import DecodeEngine, eos_token_ids
from fr_bench.decoding.method import DecodeOptions, EngineMethod
from fr_bench.methods import register_method
from fr_bench.models.expert_pool import ExpertPool


@dataclass
class CollabOptions(DecodeOptions):
    top_k: int = 2                     # candidate tokens per expert per step
    rollout_tokens: int = 4            # greedy tokens each candidate is rolled out (0: score prefix + candidate)
    # rollout tokens per sample (experts x top_k x rollout_tokens per look-ahead step); then the last winner decodes
    # greedily. -1 = look ahead at every step.
    rollout_budget: int = 96


@register_method("collab")
class CollabMethod(EngineMethod):
    """cost_tokens = the experts' and the reward model's prefix positions (engine) + every rollout and reward
    position of the look-ahead steps."""

    options_schema = CollabOptions

    def __init__(self, world: Any, options: dict[str, Any] | None = None, seed: int = 0) -> None:
        super().__init__(world, options, seed)
        for key, low in (("top_k", 1), ("rollout_tokens", 0), ("rollout_budget", -1)):
            if getattr(self.cfg, key) < low:
                raise ConfigError(f"options of method '{self.name}': {key}={getattr(self.cfg, key)} must be >= {low}.")

    def requires(self) -> list[str]:
        return ["reward_model"]

    def load(self, artifacts: dict[str, Path]) -> None:
        from baselines.reward_model import RewardModel

        pool = ExpertPool.load(self.world.experts, self.world.tokenizer, self.dtype, self.device,
                               self.cfg.attn_implementation)
        step = len(pool) * self.cfg.top_k * self.cfg.rollout_tokens
        if 0 <= self.cfg.rollout_budget < step:
            raise ConfigError(f"options of method '{self.name}': rollout_budget={self.cfg.rollout_budget} is below "
                              f"one look-ahead step ({len(pool)} experts x top_k {self.cfg.top_k} x rollout_tokens "
                              f"{self.cfg.rollout_tokens} = {step}), so Collab would never look ahead; raise it or "
                              f"use -1 (no limit).")
        tokenizer = self.tokenizer()
        rm = RewardModel.from_pretrained(artifacts["reward_model"], self.dtype, self.device)
        if rm.tokenizer.get_vocab() != tokenizer.get_vocab():
            raise ValueError(f"method '{self.name}': the reward model's tokenizer differs from the world's "
                             f"({len(rm.tokenizer)} vs {len(tokenizer)} tokens); Collab scores the experts' token "
                             f"ids with a KV cache, so use a reward model of the experts' family (seq_select takes "
                             f"any reward model).")
        eos = eos_token_ids(tokenizer, pool.models)
        policy = Collab(experts=list(range(len(pool))), reward=len(pool), eos_ids=eos, top_k=self.cfg.top_k,
                        rollout_tokens=self.cfg.rollout_tokens, budget=self.cfg.rollout_budget)
        self.engine = DecodeEngine([*pool.models, RewardHeadLM(rm.model)], policy, tokenizer, eos_ids=eos,
                                   lazy=self.cfg.lazy)
