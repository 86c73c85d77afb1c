"""The direct fine-tuning baseline (paper: "Fine-tuned Model"): the router's init after the same SFT then DPO recipe
as FusionRoute's router, on the same data and budget, with no routing; decoded alone through the engine.

The artifact `finetuned` is built by `fr_bench.training.preference_stages.train_finetuned`.
"""
from __future__ import annotations

from pathlib import Path

from fr_bench.decoding.engine import DecodeEngine
from fr_bench.decoding.method import EngineMethod
from fr_bench.decoding.policies import SingleModel
from fr_bench.methods import register_method
from fr_bench.models.expert_pool import ExpertPool

ARTIFACT = "finetuned"


@register_method("finetuned")
class FinetunedModel(EngineMethod):
    def requires(self) -> list[str]:
        return [ARTIFACT]

    def load(self, artifacts: dict[str, Path]) -> None:
        if ARTIFACT not in artifacts:
            raise KeyError(f"method '{self.name}' needs artifact '{ARTIFACT}' (the fine-tuned LM); it was not built")
        pool = ExpertPool.load({"fine-tuned model": str(artifacts[ARTIFACT])}, self.world.tokenizer, self.dtype,
                               self.device, self.cfg.attn_implementation)
        self.engine = DecodeEngine(pool.models, SingleModel(0), self.tokenizer(), lazy=self.cfg.lazy)
