"""Merged-model methods: the experts merged into one LM (artifact `merge_<method>`), decoded alone by the engine.

The merge settings (λ, density) are the artifact's config (`artifacts.merge_dare.lam` etc. in the sweep YAML), so
two methods reading one merge share it; the method options are only decode options.
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from fr_bench.decoding.engine import DecodeEngine
from fr_bench.decoding.method import EngineMethod
from fr_bench.decoding.policies import SingleModel
from fr_bench.methods import register_method
from fr_bench.models.expert_pool import ExpertPool


class MergedModel(EngineMethod):
    merge_method: ClassVar[str]

    @property
    def artifact(self) -> str:
        return f"merge_{self.merge_method}"

    def requires(self) -> list[str]:
        return [self.artifact]

    def load(self, artifacts: dict[str, Path]) -> None:
        pool = ExpertPool.load({self.artifact: str(artifacts[self.artifact])}, self.world.tokenizer, self.dtype,
                               self.device, self.cfg.attn_implementation)
        self.engine = DecodeEngine(pool.models, SingleModel(0), self.tokenizer(), lazy=self.cfg.lazy)


@register_method("task_arithmetic")
class TaskArithmetic(MergedModel):
    """θ_base + λ Σ_i (θ_i − θ_base) (Ilharco et al. 2022); paper: λ = 1."""

    merge_method = "task_arithmetic"


@register_method("ties")
class Ties(MergedModel):
    """Trim each task vector to its top-density magnitudes, elect signs, disjoint mean, × λ (Yadav et al. 2023)."""

    merge_method = "ties"


@register_method("dare")
class Dare(MergedModel):
    """Drop task-vector entries with p = 1 − density, rescale by 1/(1 − p), sum × λ (Yu et al. 2023);
    paper: p = 0.9, λ = 1."""

    merge_method = "dare"
