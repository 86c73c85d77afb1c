"""What a benchmark is: rows + prompt + stop sequences + answer extraction + scoring (lm-eval's task idea).

A task scores a batch of raw model outputs at once (code tasks run their programs in parallel in the sandbox) and
returns one `SampleResult` per row; `aggregate` turns those into the benchmark's metrics through torchmetrics, so
sums sync across processes.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Sequence

from ..types import SampleResult


class Task(ABC):
    """A benchmark. Subclasses set the class attributes and implement the four abstract methods."""

    name: ClassVar[str]
    domain: ClassVar[str]  # math | code | if | general
    metric_names: ClassVar[tuple[str, ...]]
    primary_metric: ClassVar[str]
    hub_name: ClassVar[str | None] = None

    def __init__(self, data: str | None = None, limit: int | None = None, fewshot: int = 0,
                 max_new_tokens: int = 400, system_prompt: str | None = None) -> None:
        self.data = data
        self.limit = limit
        self.fewshot = fewshot
        self.max_new_tokens = max_new_tokens
        self.system_prompt = system_prompt

    stop_sequences: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def load(self) -> list[dict[str, Any]]:
        """Rows of the evaluation split (from `self.data` when given, else the Hub), each with a string 'id'."""

    @abstractmethod
    def user_message(self, row: dict[str, Any]) -> str:
        """The text of the user turn for this row (few-shot examples included when `self.fewshot`)."""

    @abstractmethod
    def score(self, rows: Sequence[dict[str, Any]], outputs: Sequence[str]) -> list[SampleResult]:
        """Score raw model outputs against their rows."""

    def limited(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The first `limit` rows; a limit above the rows there are is an error, not a silently smaller benchmark."""
        if self.limit is None:
            return rows
        if self.limit > len(rows):
            raise ValueError(f"{self.name}: limit={self.limit} but {self.data or 'the Hub dataset'} holds only "
                             f"{len(rows)} evaluation rows; lower the task's `limit` (tasks.<name>.limit, or the "
                             f"sweep-wide `limit`) to at most {len(rows)}, remove it, or point `data` at the full "
                             f"data.")
        return rows[: self.limit]

    def prompt(self, row: dict[str, Any], tokenizer: Any = None) -> str:
        """The model input: the user message through the tokenizer's chat template when it has one."""
        from ..chat import format_prompt

        return format_prompt(tokenizer, self.user_message(row), self.system_prompt)

    def aggregate(self, results: Sequence[SampleResult]) -> dict[str, float]:
        from ..scoring.metrics import aggregate_results

        return aggregate_results(results, self.metric_names)
