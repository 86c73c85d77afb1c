"""GSM8K (grade-school math word problems), scored like lm-evaluation-harness's `gsm8k` task.

Two extractions from the same output, both compared after lm-eval's normalisation (drop ",", "$", everything up to
"#### ", a trailing "."; lower-case): `strict` takes the number after "#### " (the answer format of the dataset's own
solutions), `flexible` takes the last number anywhere in the output.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

from . import register_task
from .base import SampleResult, Task
from .io import is_local, load_rows, require_fields

STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
IGNORE = (",", r"\$", r"(?s).*#### ", r"\.$")
INVALID = "[invalid]"
ZERO_SHOT = ("{question}\n\nSolve the problem step by step. On the last line, write the final answer as a number "
             "in the form \"#### <number>\".")


def extract_strict(text: str) -> str:
    m = STRICT.search(text)
    return m.group(1).strip() if m else INVALID


def extract_flexible(text: str) -> str:
    """lm-eval's flexible-extract: the last match, first non-empty group."""
    matches = FLEXIBLE.findall(text)
    if not matches:
        return INVALID
    groups = [g for g in matches[-1] if g]
    return groups[0].strip() if groups else INVALID


def normalize(text: str) -> str:
    for pattern in IGNORE:
        text = re.sub(pattern, "", text)
    return text.lower()


def gold_answer(solution: str) -> str:
    """The normalised final answer of a dataset solution ("... #### 1,234" -> "1234")."""
    return normalize(solution)


@register_task("gsm8k")
class GSM8K(Task):
    domain = "math"
    metric_names = ("exact_match_strict", "exact_match_flexible")
    primary_metric = "exact_match_strict"
    hub_name = "openai/gsm8k"
    stop_sequences = ("Question:",)  # lm-eval's; it only bites in the few-shot format

    def __init__(self, *args: Any, fewshot_data: str | None = None, **kwargs: Any) -> None:
        """`fewshot_data`: train rows for exemplars; default the `train.jsonl` beside a local `data`, else the Hub."""
        super().__init__(*args, **kwargs)
        self.fewshot_data = fewshot_data
        self._exemplars: list[dict[str, Any]] | None = None

    def load(self) -> list[dict[str, Any]]:
        rows = load_rows(self.data, self.hub_name, "main", "test")
        require_fields(rows, ("question", "answer"), self.name, self.data)
        rows = [{**r, "id": str(i)} for i, r in enumerate(rows)]
        return self.limited(rows)

    def exemplars(self) -> list[dict[str, Any]]:
        """The first `fewshot` train rows (lm-eval samples them at random; fixed ones keep prompts reproducible)."""
        if self._exemplars is None:
            source = self.fewshot_data
            if source is None and self.data is not None and is_local(str(self.data)):
                source = str(Path(self.data).expanduser().with_name("train.jsonl"))
            rows = load_rows(source, self.hub_name, "main", "train")
            if len(rows) < self.fewshot:
                raise ValueError(f"gsm8k: fewshot={self.fewshot} but {source or 'the train split'} has only "
                                 f"{len(rows)} rows; pass fewshot_data= a larger train file")
            self._exemplars = rows[: self.fewshot]
        return self._exemplars

    def user_message(self, row: dict[str, Any]) -> str:
        if not self.fewshot:
            return ZERO_SHOT.format(question=row["question"])
        shots = "".join(f"Question: {ex['question']}\nAnswer: {ex['answer']}\n\n" for ex in self.exemplars())
        return f"{shots}Question: {row['question']}\nAnswer:"

    def score(self, rows: Sequence[dict[str, Any]], outputs: Sequence[str]) -> list[SampleResult]:
        results = []
        for row, out in zip(rows, outputs, strict=True):
            gold = gold_answer(row["answer"])
            strict, flexible = extract_strict(out), extract_flexible(out)
            s_ok, f_ok = normalize(strict) == gold, normalize(flexible) == gold
            results.append(SampleResult(
                id=row["id"], extracted={"strict": strict, "flexible": flexible}, gold=gold, correct=s_ok,
                metrics={"exact_match_strict": float(s_ok), "exact_match_flexible": float(f_ok)}))
        return results
