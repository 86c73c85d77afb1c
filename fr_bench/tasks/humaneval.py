"""HumanEval: complete a Python function; pass@k by running the benchmark's `check` in the sandbox."""
from __future__ import annotations

from typing import Any, Sequence

from ..scoring.code import humaneval_program, score_programs
from ..scoring.sandbox import SandboxConfig
from . import register_task
from .base import SampleResult, Task
from .io import load_rows, require_fields

ZERO_SHOT = ("Complete the following Python function. Reply with the complete function in a single ```python "
             "code block.\n\n```python\n{prompt}```")


@register_task("humaneval")
class HumanEval(Task):
    domain = "code"
    metric_names = ("pass@1",)
    primary_metric = "pass@1"
    hub_name = "openai/openai_humaneval"

    def __init__(self, *args: Any, sandbox: SandboxConfig | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sandbox = sandbox

    def load(self) -> list[dict[str, Any]]:
        rows = load_rows(self.data, self.hub_name, None, "test")
        require_fields(rows, ("task_id", "prompt", "test", "entry_point"), self.name, self.data)
        rows = [{**r, "id": str(r["task_id"])} for r in rows]
        return self.limited(rows)

    def user_message(self, row: dict[str, Any]) -> str:
        if self.fewshot:
            raise ValueError("humaneval has no few-shot format; use fewshot=0")
        return ZERO_SHOT.format(prompt=row["prompt"])

    def score(self, rows: Sequence[dict[str, Any]], outputs: Sequence[str]) -> list[SampleResult]:
        built = [humaneval_program(row, out) for row, out in zip(rows, outputs, strict=True)]
        return score_programs([r["id"] for r in rows], [p for p, _ in built], [c for _, c in built], self.sandbox)

    def aggregate(self, results: Sequence[SampleResult]) -> dict[str, float]:
        """pass@1 (and pass@10/100 when every problem has that many samples), averaged over problems."""
        from ..scoring.metrics import aggregate_pass_at_k  # torch-based: imported only when aggregating

        return aggregate_pass_at_k(results)
