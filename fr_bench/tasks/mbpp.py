"""MBPP: write a Python function that passes the given asserts; pass@k in the sandbox.

Two registered tasks: `mbpp` is the full release's test split (the Hub's `full` config: task_id 11-510, 500 rows,
the paper's MBPP) and `mbpp_sanitized` the hand-verified subset (the Hub's `sanitized` config: 257 of those rows).
Full rows name the task `text` (read as `prompt`) and may carry `test_setup_code` (run before the code and the tests,
as MBPP's own harness does; one test row has any).

Split rule: an official file (`mbpp.jsonl` / `sanitized-mbpp.json`) holds the prompt, train, validation and test splits
together, and only the test split (task_id 11-510) is evaluated. `split="auto"`
(default) keeps task_id 11-510 when the rows span more than one official split, i.e. when some task_id lies outside
11-510 and some inside (only a full release does that); any other file (a micro-world file, a hand-made subset) is
used whole. `split="test"` or `split="all"` forces either choice.
"""
from __future__ import annotations

from typing import Any, Sequence

from ..scoring.code import mbpp_program, score_programs
from ..scoring.sandbox import SandboxConfig
from . import register_task
from .base import SampleResult, Task
from .io import load_rows, require_fields

TEST_IDS = range(11, 511)
PROMPT = ("You are an expert Python programmer, and here is your task: {text} Your code should pass these tests:"
          "\n\n{tests}")
# lm-eval's `mbpp` few-shot exemplars (MBPP's prompt split, task_ids 2, 3 and 4; lm_eval/tasks/mbpp/utils.py).
FEWSHOT_EXEMPLARS = (
    {"task_id": 2, "text": "Write a function to find the similar elements from the given two tuple lists.",
     "code": ("def similar_elements(test_tup1, test_tup2):\r\n  res = tuple(set(test_tup1) & set(test_tup2))\r\n"
              "  return (res) "),
     "test_list": ["assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)",
                   "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)",
                   "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)"]},
    {"task_id": 3, "text": "Write a python function to identify non-prime numbers.",
     "code": ("import math\r\ndef is_not_prime(n):\r\n    result = False\r\n"
              "    for i in range(2,int(math.sqrt(n)) + 1):\r\n        if n % i == 0:\r\n            result = True\r\n"
              "    return result"),
     "test_list": ["assert is_not_prime(2) == False", "assert is_not_prime(10) == True",
                   "assert is_not_prime(35) == True"]},
    {"task_id": 4,
     "text": "Write a function to find the largest integers from a given list of numbers using heap queue algorithm.",
     "code": ("import heapq as hq\r\ndef heap_queue_largest(nums,n):\r\n  largest_nums = hq.nlargest(n, nums)\r\n"
              "  return largest_nums"),
     "test_list": ["assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],3)==[85, 75, 65] ",
                   "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],2)==[85, 75] ",
                   "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],5)==[85, 75, 65, 58, 35]"]},
)


def _fewshot_text(text: str, tests: list[str]) -> str:
    """lm-eval `mbpp` doc_to_text: the task, its first three asserts, then "[BEGIN]"."""
    return (f"You are an expert Python programmer, and here is your task: {text} Your code should pass these tests:"
            f"\n\n" + "\n".join(tests[:3]) + "\n[BEGIN]\n")


@register_task("mbpp")
class MBPP(Task):
    domain = "code"
    metric_names = ("pass@1",)
    primary_metric = "pass@1"
    hub_name = "google-research-datasets/mbpp"
    hub_config = "full"
    stop_sequences = ("[DONE]",)  # lm-eval's; ends a few-shot answer

    def __init__(self, *args: Any, split: str = "auto", sandbox: SandboxConfig | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if split not in ("auto", "test", "all"):
            raise ValueError(f"mbpp: split={split!r}; choose auto, test or all")
        if self.fewshot not in (0, 1, 2, 3):
            raise ValueError(f"mbpp: fewshot={self.fewshot}; lm-eval's format has at most 3 exemplars")
        self.split = split
        self.sandbox = sandbox

    def load(self) -> list[dict[str, Any]]:
        rows = load_rows(self.data, self.hub_name, self.hub_config, "test")
        rows = [r if "prompt" in r or "text" not in r else {**r, "prompt": r["text"]} for r in rows]  # full MBPP
        require_fields(rows, ("task_id", "prompt", "code", "test_list"), self.name, self.data)
        if self._keep_test_split(rows):
            rows = [r for r in rows if isinstance(r["task_id"], int) and r["task_id"] in TEST_IDS]
        rows = [{**r, "test_imports": r.get("test_imports") or ([r["test_setup_code"]] if r.get("test_setup_code")
                                                                else []), "id": str(r["task_id"])} for r in rows]
        return self.limited(rows)

    def _keep_test_split(self, rows: list[dict[str, Any]]) -> bool:
        if self.split != "auto":
            return self.split == "test"
        ids = [r["task_id"] for r in rows]
        inside = sum(isinstance(i, int) and i in TEST_IDS for i in ids)
        return 0 < inside < len(ids) and all(isinstance(i, int) for i in ids)

    def user_message(self, row: dict[str, Any]) -> str:
        if not self.fewshot:
            return PROMPT.format(text=row["prompt"], tests="\n".join(row["test_list"]))
        shots = "".join(_fewshot_text(ex["text"], ex["test_list"]) + ex["code"] + "\n[DONE]\n\n"
                        for ex in FEWSHOT_EXEMPLARS[: self.fewshot])
        return shots + _fewshot_text(row["prompt"], row["test_list"])

    def score(self, rows: Sequence[dict[str, Any]], outputs: Sequence[str]) -> list[SampleResult]:
        built = [mbpp_program(row, out) for row, out in zip(rows, outputs, strict=True)]
        return score_programs([r["id"] for r in rows], [p for p, _ in built], [c for _, c in built], self.sandbox)

    def aggregate(self, results: Sequence[SampleResult]) -> dict[str, float]:
        """pass@1 (and pass@10/100 when every problem has that many samples), averaged over problems."""
        from ..scoring.metrics import aggregate_pass_at_k  # torch-based: imported only when aggregating

        return aggregate_pass_at_k(results)


@register_task("mbpp_sanitized")
class MBPPSanitized(MBPP):
    """The sanitized subset (257 test rows, hand-checked prompts and tests); the default before the paper's 500."""

    hub_config = "sanitized"
