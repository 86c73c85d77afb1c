"""`fr-bench COMMAND ...`: one console script over every entry point, arguments passed through unchanged."""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from fr_bench.cli import COMMANDS, main


def test_every_command_resolves_to_an_entry_point() -> None:
    for name, (target, _) in COMMANDS.items():
        module, _, func = target.partition(":")
        assert callable(getattr(importlib.import_module(module), func)), name


def test_help_and_unknown_commands(capsys: pytest.CaptureFixture) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)
    assert main(["nope"]) == 2 and "unknown command 'nope'" in capsys.readouterr().err
    assert main([]) == 2


def test_a_command_gets_its_arguments(tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture) -> None:
    """`fr-bench score` scores real GSM8K rows exactly as `python -m fr_bench.score` does."""
    data = shared_data / "gsm8k" / "test.jsonl"
    rows = [json.loads(line) for line in data.read_text().splitlines()[:3]]
    preds = tmp_path / "preds.jsonl"
    answers = [r["answer"].split("####")[-1].strip() for r in rows]
    preds.write_text("".join(json.dumps({"id": i, "output": f"The answer is {a}.\n#### {a}" if i < 2 else "no idea"})
                             + "\n" for i, a in enumerate(answers)))
    assert main(["score", "--task", "gsm8k", "--predictions", str(preds), "--data", str(data)]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["exact_match_strict"] == pytest.approx(2 / 3)
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--help"])
    assert exc.value.code == 0 and "--dry-run" in capsys.readouterr().out
