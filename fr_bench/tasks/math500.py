"""MATH-500 (the PRM800K test subset of MATH): the last \\boxed{} answer, judged equivalent by math-verify."""
from __future__ import annotations

from typing import Any, Sequence

from ..scoring.math_answers import equivalent, last_boxed
from . import register_task
from .base import SampleResult, Task
from .io import load_rows, require_fields

ZERO_SHOT = "{problem}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."


@register_task("math500")
class Math500(Task):
    domain = "math"
    metric_names = ("accuracy",)
    primary_metric = "accuracy"
    hub_name = "HuggingFaceH4/MATH-500"

    def load(self) -> list[dict[str, Any]]:
        rows = load_rows(self.data, self.hub_name, None, "test")
        require_fields(rows, ("problem", "answer", "unique_id"), self.name, self.data)
        rows = [{**r, "id": str(r["unique_id"])} for r in rows]
        return self.limited(rows)

    def user_message(self, row: dict[str, Any]) -> str:
        if self.fewshot:
            raise ValueError("math500 has no few-shot format; use fewshot=0")
        return ZERO_SHOT.format(problem=row["problem"])

    def score(self, rows: Sequence[dict[str, Any]], outputs: Sequence[str]) -> list[SampleResult]:
        results = []
        for row, out in zip(rows, outputs, strict=True):
            pred = last_boxed(out)
            ok = pred is not None and equivalent(pred, row["answer"])
            results.append(SampleResult(id=row["id"], extracted=pred, gold=row["answer"], correct=ok,
                                        metrics={"accuracy": float(ok)}))
        return results
