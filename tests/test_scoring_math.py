"""GSM8K and MATH-500 scoring on the real rows."""
from __future__ import annotations

from pathlib import Path

import pytest

from fr_bench.scoring.math_answers import equivalent, last_boxed
from fr_bench.tasks import get_task
from fr_bench.tasks.gsm8k import FLEXIBLE, STRICT, extract_flexible, extract_strict


@pytest.fixture(scope="module")
def gsm8k(shared_data: Path):
    task = get_task("gsm8k", data=str(shared_data / "gsm8k" / "test.jsonl"))
    return task, task.load()


def test_gsm8k_gold_solutions_score_strict(gsm8k) -> None:
    task, rows = gsm8k
    assert len(rows) == 1319 and rows[0]["id"] == "0" and rows[-1]["id"] == "1318"
    results = task.score(rows, [r["answer"] for r in rows])
    assert task.aggregate(results) == {"exact_match_strict": 1.0, "exact_match_flexible": 1.0, "n": 1319}


def test_gsm8k_flexible_but_not_strict(gsm8k, tmp_path: Path) -> None:
    task, _ = gsm8k
    row = {"id": "x", "question": "?", "answer": "Add them up.\n#### 1234"}
    wrong = {**row, "answer": "#### 1235"}
    [flex_only, strict, both_wrong] = task.score([row, row, wrong], [
        "so the answer is $1,234.", "Reasoning... 12 apples\n#### 1,234", "so the answer is $1,234."])
    assert flex_only.metrics == {"exact_match_strict": 0.0, "exact_match_flexible": 1.0}
    assert strict.metrics == {"exact_match_strict": 1.0, "exact_match_flexible": 1.0}
    assert both_wrong.metrics == {"exact_match_strict": 0.0, "exact_match_flexible": 0.0}
    assert flex_only.extracted == {"strict": "[invalid]", "flexible": "$1,234."}


def test_gsm8k_extraction_matches_lm_eval_filters(gsm8k) -> None:
    from lm_eval.filters.extraction import RegexFilter

    _, rows = gsm8k
    texts = [r["answer"] for r in rows[:50]] + [
        "so the answer is $1,234.", "x = -3.5 and then 7", "no digits here", "#### -12", "3 4 5", "1.2.3,4 ok"]
    strict = RegexFilter(regex_pattern=STRICT.pattern).apply([[t] for t in texts], None)
    flexible = RegexFilter(regex_pattern=FLEXIBLE.pattern, group_select=-1).apply([[t] for t in texts], None)
    assert [extract_strict(t) for t in texts] == [s[0] for s in strict]
    assert [extract_flexible(t) for t in texts] == [f[0] for f in flexible]


def test_gsm8k_prompts(gsm8k, shared_data: Path) -> None:
    task, rows = gsm8k
    assert task.user_message(rows[0]).startswith(rows[0]["question"]) and "####" in task.user_message(rows[0])
    few = get_task("gsm8k", data=str(shared_data / "gsm8k" / "test.jsonl"), fewshot=2)
    text = few.user_message(rows[0])  # lm-eval format, exemplars from the train.jsonl beside the test file
    assert text.count("Question: ") == 3 and text.endswith(f"Question: {rows[0]['question']}\nAnswer:")
    assert text.startswith("Question: Natalia sold clips to 48 of her friends in April")


def test_last_boxed() -> None:
    assert last_boxed("first \\boxed{1} then \\boxed{\\frac{1}{2}}.") == "\\frac{1}{2}"
    assert last_boxed("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}") == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert last_boxed("so $\\boxed 5$.") == "5"
    assert last_boxed("\\fbox{x^{2}}") == "x^{2}"
    assert last_boxed("\\boxed{7} and a cut-off \\boxed{\\frac{1}{") == "7"
    assert last_boxed("no box here: 5") is None


@pytest.mark.parametrize("gold, pred, same", [
    ("\\frac{1}{2}", "\\frac12", True), ("\\frac{1}{2}", "\\dfrac{1}{2}", True), ("\\frac{1}{2}", "0.5", True),
    ("\\frac{1}{2}", "  \\frac { 1 } { 2 } ", True), ("5", "5\\text{ cm}", True), ("3", "x=3", True),
    ("x=3", "3", True), ("2\\sqrt{2}", "\\sqrt{8}", True), ("\\{1,2\\}", "\\{2,1\\}", True),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\pi/2)", True),
    ("\\frac{1}{2}", "\\frac{1}{3}", False), ("5", "6", False), ("x=3", "x=4", False), ("(1,2)", "(2,1)", False),
    ("\\text{(C)}", "\\text{(D)}", False),
])
def test_math_equivalence(gold: str, pred: str, same: bool) -> None:
    assert equivalent(pred, gold) is same


@pytest.mark.slow
def test_math500_gold_answers_score_one(shared_data: Path) -> None:
    task = get_task("math500", data=str(shared_data / "math500" / "test.jsonl"))
    rows = task.load()
    assert len(rows) == 500 and rows[0]["id"] == "test/precalculus/807.json"
    results = task.score(rows, [f"Thus the answer is $\\boxed{{{r['answer']}}}$." for r in rows])
    assert [r.id for r in results if not r.correct] == []
    assert task.aggregate(results) == {"accuracy": 1.0, "n": 500}
    wrong = task.score(rows[:20], ["The answer is \\boxed{-123456789}" for _ in rows[:20]]
                       ) + task.score(rows[:3], ["I could not solve it."] * 3)
    assert not any(r.correct for r in wrong)


def test_math500_works_from_a_worker_thread(shared_data: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    task = get_task("math500", data=str(shared_data / "math500" / "test.jsonl"), limit=3)
    rows = task.load()
    with ThreadPoolExecutor(1) as pool:  # math-verify's signal-based timeout would raise here
        results = pool.submit(task.score, rows, [f"\\boxed{{{r['answer']}}}" for r in rows]).result()
    assert all(r.correct for r in results)
