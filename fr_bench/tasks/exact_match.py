"""Generic exact-match rows {"id", "prompt", "answer"} (the micro world's "general" domain)."""
from __future__ import annotations

from typing import Any, Sequence

from . import register_task
from .base import SampleResult, Task
from .io import read_rows, require_fields


@register_task("exact_match")
class ExactMatch(Task):
    domain = "general"
    metric_names = ("exact_match",)
    primary_metric = "exact_match"

    def load(self) -> list[dict[str, Any]]:
        if self.data is None:
            raise ValueError("exact_match has no default dataset; pass data= a JSON/JSONL file of "
                             "{'id', 'prompt', 'answer'} rows")
        rows = read_rows(self.data)
        require_fields(rows, ("id", "prompt", "answer"), self.name, self.data)
        rows = [{**r, "id": str(r["id"])} for r in rows]
        return self.limited(rows)

    def user_message(self, row: dict[str, Any]) -> str:
        if self.fewshot:
            raise ValueError("exact_match has no few-shot format; use fewshot=0")
        return row["prompt"]

    def score(self, rows: Sequence[dict[str, Any]], outputs: Sequence[str]) -> list[SampleResult]:
        results = []
        for row, out in zip(rows, outputs, strict=True):
            pred, gold = out.strip(), str(row["answer"]).strip()
            results.append(SampleResult(id=row["id"], extracted=pred, gold=gold, correct=pred == gold,
                                        metrics={"exact_match": float(pred == gold)}))
        return results
