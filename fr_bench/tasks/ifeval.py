"""IFEval: verifiable instructions ("no commas", "at least 300 words", ...), checked by lm-eval's copy of Google's
checkers (`lm_eval.tasks.ifeval`), with its four metrics. Prompt-level metrics average over prompts; instruction-level
ones over instructions, so each row stores its list of per-instruction results and aggregation sums the lists.

Determinism: a checker whose kwargs are missing or invalid fills them at random (e.g. `letter_frequency` with the
letter "#" checks a random letter instead); Google's and lm-eval's results then depend on the global random state.
We seed `random` from the row's key before checking that row (same seed for strict and loose, caller's random state
restored afterwards), so a row's score never depends on the batch or run, and flag such instructions as
`randomized` in the per-sample details.
"""
from __future__ import annotations

import random
from typing import Any, Sequence

from . import register_task
from .base import SampleResult, Task
from .io import load_rows, require_fields


def _checkers() -> Any:
    """lm-eval's IFEval utils, imported only after NLTK's punkt tables are in place (its import would download)."""
    from ..offline import ensure_nltk_data

    ensure_nltk_data()
    import langdetect
    from lm_eval.tasks.ifeval import utils

    langdetect.DetectorFactory.seed = 0  # language checks are otherwise random from run to run
    return utils


@register_task("ifeval")
class IFEval(Task):
    domain = "if"
    metric_names = ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc",
                    "inst_level_loose_acc")
    primary_metric = "prompt_level_strict_acc"
    hub_name = "google/IFEval"

    def load(self) -> list[dict[str, Any]]:
        rows = load_rows(self.data, self.hub_name, None, "train")
        require_fields(rows, ("key", "prompt", "instruction_id_list", "kwargs"), self.name, self.data)
        rows = [{**r, "id": str(r["key"])} for r in rows]
        return self.limited(rows)

    def user_message(self, row: dict[str, Any]) -> str:
        if self.fewshot:
            raise ValueError("ifeval has no few-shot format; use fewshot=0")
        return row["prompt"]

    def score(self, rows: Sequence[dict[str, Any]], outputs: Sequence[str]) -> list[SampleResult]:
        utils = _checkers()
        caller_state = random.getstate()
        try:
            return [self._score_one(utils, row, out) for row, out in zip(rows, outputs, strict=True)]
        finally:
            random.setstate(caller_state)

    @staticmethod
    def _score_one(utils: Any, row: dict[str, Any], out: str) -> SampleResult:
        inp = utils.InputExample(key=row["key"], instruction_id_list=row["instruction_id_list"],
                                 prompt=row["prompt"], kwargs=row["kwargs"])
        seed = f"ifeval:{row['key']}"
        random.seed(seed)
        strict = utils.test_instruction_following_strict(inp, out).follow_instruction_list
        random.seed(seed)
        loose = utils.test_instruction_following_loose(inp, out).follow_instruction_list
        randomized = [_is_randomized(iid, kw) for iid, kw in zip(row["instruction_id_list"], row["kwargs"])]
        return SampleResult(
            id=row["id"], extracted=None, gold=row["instruction_id_list"], correct=all(strict),
            metrics={"prompt_level_strict_acc": float(all(strict)),
                     "inst_level_strict_acc": [float(x) for x in strict],
                     "prompt_level_loose_acc": float(all(loose)),
                     "inst_level_loose_acc": [float(x) for x in loose]},
            details={"instructions": [{"id": i, "strict": s, "loose": lo, **({"randomized": True} if r else {})}
                                      for i, s, lo, r in zip(row["instruction_id_list"], strict, loose, randomized)]})


def _is_randomized(instruction_id: str, kwargs: dict[str, Any]) -> bool:
    """Whether the checker draws part of its own arguments at random for these kwargs (built as lm-eval does)."""
    from lm_eval.tasks.ifeval import instructions_registry

    args = []
    for seed in (1, 2, 3):
        random.seed(seed)
        checker = instructions_registry.INSTRUCTION_DICT[instruction_id](instruction_id)
        checker.build_description(**{k: v for k, v in kwargs.items() if v})
        args.append(repr(checker.get_instruction_args()))
    return len(set(args)) > 1
