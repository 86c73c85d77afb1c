"""One logging set-up: every line once, `-v` adds fr_bench's debug lines, and the micro CLI goes through it."""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = """
import argparse, logging, sys
from fr_bench import logs
p = argparse.ArgumentParser()
logs.add_verbose_flag(p)
args = p.parse_args(sys.argv[1:])
logs.configure(logs.level(args.verbose))
logs.configure(logs.level(args.verbose))   # a second entry point in the same process adds no second handler
log = logging.getLogger("fr_bench.micro.build")
log.info("an info line")
log.debug("a debug line")
logging.getLogger("urllib3").info("another library's info line")
"""


def _stderr(*args: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, *args], cwd=REPO, capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, check=True)
    return [line.split(": ", 1)[1] for line in out.stderr.splitlines() if ": " in line]


def test_each_line_once_and_verbose_adds_debug() -> None:
    assert _stderr() == ["an info line"]
    assert _stderr("-v") == ["an info line", "a debug line"]


def test_micro_cli_configures_logging_through_logs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from fr_bench import logs
    from fr_bench.micro.__main__ import main

    levels: list[int] = []
    monkeypatch.setattr(logs, "configure", levels.append)
    missing = str(tmp_path / "missing.yaml")
    assert main(["build", missing, "-v"]) == 2 and main(["build", missing]) == 2
    assert levels == [logging.DEBUG, logging.INFO]
