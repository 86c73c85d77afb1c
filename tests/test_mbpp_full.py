"""MBPP as the paper runs it: the full release's 500 test rows (task_id 11-510); the sanitized 257 stay available,
and a `limit` above the rows there are fails instead of silently shrinking the benchmark."""
from __future__ import annotations

from pathlib import Path

import pytest

from fr_bench.scoring.code import mbpp_program
from fr_bench.scoring.sandbox import SandboxConfig
from fr_bench.tasks import get_task, io

FULL = "mbpp/mbpp_full_UNVERIFIED.jsonl"
SANITIZED = "mbpp/sanitized-mbpp.json"


@pytest.fixture(scope="module")
def full(shared_data: Path):
    task = get_task("mbpp", data=str(shared_data / FULL))
    return task, task.load()


def test_full_file_gives_the_500_test_rows(full) -> None:
    task, rows = full
    assert [r["id"] for r in rows] == [str(i) for i in range(11, 511)]
    assert rows[0]["prompt"].startswith("Write a python function to remove first and last occurrence")  # from `text`
    assert "Your code should pass these tests:" in task.user_message(rows[0])
    setup = [r for r in rows if r["test_imports"]]
    assert len(setup) == 1 and setup[0]["test_imports"] == [setup[0]["test_setup_code"]]


def test_full_references_pass_and_a_wrong_answer_fails(full) -> None:
    """The real scorer on every 10th row's reference solution (the file is unverified, so a few could fail; these
    pass), and on a wrong one."""
    task, rows = full
    picked = rows[::10]
    results = task.score(picked, ["```python\n" + r["code"] + "\n```" for r in picked])
    assert [r.id for r in results if not r.correct] == []
    wrong = task.score(picked[:1], ["```python\ndef remove_Occ(s, ch):\n    return s\n```"])
    assert not wrong[0].correct


def test_setup_code_runs_before_the_tests(full) -> None:
    _, rows = full
    row = next(r for r in rows if r["test_imports"])
    program, _ = mbpp_program(row, row["code"])
    assert program.code.startswith(row["test_setup_code"]) and program.test.startswith(row["test_setup_code"])


def test_hub_configs(monkeypatch: pytest.MonkeyPatch, shared_data: Path) -> None:
    """`mbpp` asks the Hub for the `full` config, `mbpp_sanitized` for `sanitized` (the Hub is stubbed by the local
    files of the same configs)."""
    asked = []
    files = {"full": FULL, "sanitized": SANITIZED}

    def hub(name: str, config: str | None, split: str) -> list[dict]:
        asked.append((name, config, split))
        return io.read_rows(shared_data / files[config])

    monkeypatch.setattr(io, "load_hub", hub)
    monkeypatch.setattr("fr_bench.tasks.mbpp.load_rows", lambda *a: io.load_rows(*a))
    assert len(get_task("mbpp").load()) == 500
    assert len(get_task("mbpp_sanitized").load()) == 257
    assert asked == [("google-research-datasets/mbpp", "full", "test"),
                     ("google-research-datasets/mbpp", "sanitized", "test")]


def test_limit_above_the_data_is_an_error(shared_data: Path) -> None:
    assert len(get_task("mbpp", data=str(shared_data / FULL), limit=500).load()) == 500
    with pytest.raises(ValueError, match=r"mbpp_sanitized: limit=500 but .* holds only 257 evaluation rows.*limit"):
        get_task("mbpp_sanitized", data=str(shared_data / SANITIZED), limit=500).load()
    with pytest.raises(ValueError, match=r"humaneval: limit=200 .* only 164"):      # every task, not just MBPP
        get_task("humaneval", data=str(shared_data / "humaneval" / "HumanEval.jsonl.gz"), limit=200).load()


def test_sweep_refuses_a_limit_above_a_local_file_before_training(shared_data: Path) -> None:
    from fr_bench.config import ConfigError, load_config
    from fr_bench.sweep.config import SweepConfig
    from fr_bench.sweep.worlds import planned_tasks

    def plan(**extra):
        return planned_tasks(load_config(SweepConfig, extra={"name": "t", **extra}))

    tasks = {"mbpp": {"task": "mbpp_sanitized", "data": str(shared_data / SANITIZED), "limit": 500}}
    with pytest.raises(ConfigError, match=r"tasks.mbpp.limit: 500 but .* holds only 257"):
        plan(tasks=tasks)
    with pytest.raises(ConfigError, match=r"limit \(sweep-wide\): 300 .* only 257"):
        plan(tasks={"mbpp": {**tasks["mbpp"], "limit": None}}, limit=300)
    full = {"mbpp": {"task": "mbpp", "data": str(shared_data / FULL), "limit": 500}}
    assert plan(tasks=full)["mbpp"].limit == 500
