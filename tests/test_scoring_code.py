"""HumanEval and MBPP scoring on the real rows: reference solutions pass through the sandbox, wrong ones do not."""
from __future__ import annotations

from pathlib import Path

import pytest

from fr_bench.scoring.code import extract_code, humaneval_program, mbpp_program
from fr_bench.scoring.sandbox import SandboxConfig
from fr_bench.tasks import get_task


@pytest.fixture(scope="module")
def humaneval(shared_data: Path):
    task = get_task("humaneval", data=str(shared_data / "humaneval" / "HumanEval.jsonl.gz"))
    return task, task.load()


@pytest.fixture(scope="module")
def mbpp(shared_data: Path):
    task = get_task("mbpp", data=str(shared_data / "mbpp" / "sanitized-mbpp.json"))
    return task, task.load()


def test_extract_code() -> None:
    assert extract_code("Sure:\n```python\ndef f():\n    return 1\n```\nand\n```python\nx = 2\n```") == \
        "def f():\n    return 1\n"
    assert extract_code("```\nprint(1)\n```") == "print(1)\n"
    assert extract_code("text\n```py\na = 1\n```\n```python\nb = 2\n```") == "a = 1\n"
    assert extract_code("```python\ndef cut_off():\n    return") == "def cut_off():\n    return"
    assert extract_code("    return x") == "    return x"


@pytest.mark.slow
def test_all_humaneval_canonical_solutions_pass(humaneval) -> None:
    task, rows = humaneval
    assert len(rows) == 164 and rows[0]["id"] == "HumanEval/0"
    # half as bare bodies (completion style), half as full functions in a fence (chat style)
    outputs = [r["canonical_solution"] if i % 2 else
               f"Here you go:\n```python\n{r['prompt']}{r['canonical_solution']}```" for i, r in enumerate(rows)]
    results = task.score(rows, outputs)
    failed = {r.id: r.details["output"][-300:] for r in results if not r.correct}
    assert failed == {}
    assert task.aggregate(results) == {"pass@1": 1.0, "n": 164, "samples": 164}


def test_humaneval_wrong_and_looping_programs_fail(humaneval) -> None:
    task, rows = humaneval
    task.sandbox = SandboxConfig(timeout_s=2)
    row = rows[2]  # truncate_number
    outputs = ["    return number\n",                                      # wrong body
               f"```python\ndef {row['entry_point']}(number):\n    while True:\n        pass\n```",  # infinite loop
               "return number % 1.0",                                     # right body written flush-left
               f"```python\ndef {row['entry_point']}(number: float) -> float:\n    return number % 1.0\n```"]
    results = task.score([row] * 4, outputs)
    assert [r.details["status"] for r in results] == ["failed", "timeout", "passed", "passed"]
    assert task.aggregate(results) == {"pass@1": 0.5, "n": 1, "samples": 4}


def test_humaneval_full_function_keeps_prompt_helpers(humaneval) -> None:
    _, rows = humaneval
    row = next(r for r in rows if r["id"] == "HumanEval/38")  # check() calls encode_cyclic from the prompt
    answer = "```python\ndef decode_cyclic(s):\n    return encode_cyclic(encode_cyclic(s))\n```"
    program, code = humaneval_program(row, answer)
    assert "def encode_cyclic" in program.code and code.startswith("def decode_cyclic")
    assert program.keep == ("decode_cyclic",)


@pytest.mark.slow
def test_all_mbpp_test_split_references_pass(mbpp) -> None:
    task, rows = mbpp
    assert len(rows) == 257 and {int(r["id"]) for r in rows} <= set(range(11, 511))
    results = task.score(rows, [f"```python\n{r['code']}\n```" for r in rows])
    failed = {r.id: (r.details["status"], r.details["output"][-300:]) for r in results if not r.correct}
    assert failed == {}
    assert task.aggregate(results)["pass@1"] == 1.0


def test_mbpp_wrong_program_fails_and_prompt_format(mbpp) -> None:
    task, rows = mbpp
    row = next(r for r in rows if r["id"] == "126")  # the reference is named `sum`, shadowing the builtin
    results = task.score([row, row], [row["code"], "def sum(a, b):\n    return a + b\n"])
    assert [r.correct for r in results] == [True, False]
    assert task.user_message(row) == ("You are an expert Python programmer, and here is your task: "
                                      f"{row['prompt']} Your code should pass these tests:\n\n"
                                      + "\n".join(row["test_list"]))
    program, _ = mbpp_program(row, "[BEGIN]\n" + row["code"] + "\n[DONE]")
    assert "[DONE]" not in program.code and "[BEGIN]" not in program.code


def test_mbpp_fewshot_exemplars_are_lm_evals() -> None:
    """Compared with the list in lm-eval's mbpp/utils.py (read, not imported: importing it loads `evaluate`)."""
    import ast

    import lm_eval

    from fr_bench.tasks.mbpp import FEWSHOT_EXEMPLARS

    source = (Path(lm_eval.__file__).parent / "tasks" / "mbpp" / "utils.py").read_text()
    [func] = [n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == "list_fewshot_samples"]
    scope: dict = {}
    exec(ast.get_source_segment(source, func), scope)
    ref = [{k: v for k, v in ex.items() if k != "is_fewshot"} for ex in scope["list_fewshot_samples"]()]
    assert ref == [dict(ex) for ex in FEWSHOT_EXEMPLARS]


def test_mbpp_split_rule_and_fewshot(tmp_path: Path, shared_data: Path, mbpp) -> None:
    _, rows = mbpp
    assert len(get_task("mbpp", data=str(shared_data / "mbpp" / "sanitized-mbpp.json"), split="all").load()) == 427
    micro = tmp_path / "micro.jsonl"  # a micro-world file: same schema, its own ids, used whole
    micro.write_text("".join(
        __import__("json").dumps({k: r[k] for k in ("task_id", "prompt", "code", "test_list", "test_imports")}
                                 | {"task_id": i + 1}) + "\n" for i, r in enumerate(rows[:5])))
    assert [r["id"] for r in get_task("mbpp", data=str(micro)).load()] == ["1", "2", "3", "4", "5"]
    few = get_task("mbpp", data=str(micro), fewshot=3).user_message(rows[0])
    assert few.count("[BEGIN]") == 4 and few.count("[DONE]") == 3 and few.endswith("[BEGIN]\n")
    assert few.startswith("You are an expert Python programmer, and here is your task: Write a function to find "
                          "the similar elements from the given two tuple lists.")
