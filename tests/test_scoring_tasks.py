"""The task registry's contract (what the micro world and the sweep rely on) and the row loaders."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from fr_bench.tasks import Task, get_task, task_names
from fr_bench.tasks.io import read_rows

DATA = {"gsm8k": "gsm8k/test.jsonl", "math500": "math500/test.jsonl", "mbpp": "mbpp/sanitized-mbpp.json",
        "humaneval": "humaneval/HumanEval.jsonl.gz", "ifeval": "ifeval/input_data.jsonl"}
FIRST_IDS = {"gsm8k": "0", "math500": "test/precalculus/807.json", "mbpp": "11", "humaneval": "HumanEval/0",
             "ifeval": "1000"}


def test_registry_has_the_six_tasks() -> None:
    assert {"gsm8k", "math500", "mbpp", "humaneval", "ifeval", "exact_match"} <= set(task_names())
    with pytest.raises(KeyError, match="unknown task 'gsm9k'"):
        get_task("gsm9k")


@pytest.mark.parametrize("name", sorted(DATA))
def test_tasks_load_real_rows_with_string_ids(name: str, shared_data: Path) -> None:
    task = get_task(name, data=str(shared_data / DATA[name]), limit=3)
    assert isinstance(task, Task) and task.domain in {"math", "code", "if", "general"}
    assert task.primary_metric in task.metric_names and task.max_new_tokens == 400
    assert isinstance(task.stop_sequences, tuple)
    rows = task.load()
    assert len(rows) == 3 and rows[0]["id"] == FIRST_IDS[name] and all(isinstance(r["id"], str) for r in rows)
    text = task.prompt(rows[0], tokenizer=None)  # no chat template: the user message itself
    assert text == task.user_message(rows[0]) and len(text) > 20


def test_prompt_uses_the_chat_template() -> None:
    class Tok:
        chat_template = "x"

        def apply_chat_template(self, messages, add_generation_prompt, tokenize):
            return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

    task = get_task("exact_match", data=None)
    assert task.prompt({"id": "1", "prompt": "2+2?", "answer": "4"}, Tok()) == "<user>2+2?<assistant>"


def test_exact_match_task(tmp_path: Path) -> None:
    path = tmp_path / "general.jsonl"
    path.write_text('{"id": 1, "prompt": "Capital of France?", "answer": "Paris"}\n'
                    '{"id": "b", "prompt": "2+2?", "answer": " 4 "}\n')
    task = get_task("exact_match", data=str(path))
    rows = task.load()
    assert [r["id"] for r in rows] == ["1", "b"]
    results = task.score(rows * 2, ["  Paris\n", "4", "paris", "four"])
    assert [r.correct for r in results] == [True, True, False, False]
    assert task.aggregate(results) == {"exact_match": 0.5, "n": 4}
    with pytest.raises(ValueError, match="no default dataset"):
        get_task("exact_match").load()


def test_loader_formats_and_errors(tmp_path: Path) -> None:
    rows = [{"id": "a", "prompt": "p", "answer": "x"}]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    (tmp_path / "b.json").write_text(json.dumps({"data": rows}))
    with gzip.open(tmp_path / "c.jsonl.gz", "wt") as fh:
        fh.write(json.dumps(rows[0]) + "\n\n")
    for name in ("a.json", "b.json", "c.jsonl.gz"):
        assert read_rows(tmp_path / name) == rows
    (tmp_path / "bad.jsonl").write_text('{"id": 1}\n{oops\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid JSON"):
        read_rows(tmp_path / "bad.jsonl")
    with pytest.raises(FileNotFoundError, match="missing.jsonl does not exist"):
        get_task("gsm8k", data=str(tmp_path / "missing.jsonl")).load()
    (tmp_path / "q.jsonl").write_text('{"question": "q"}\n')
    with pytest.raises(ValueError, match=r"row 0 .* lacks field\(s\) \['answer'\]"):
        get_task("gsm8k", data=str(tmp_path / "q.jsonl")).load()
