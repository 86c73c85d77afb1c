"""meta.json's provenance: what produced a sweep, and whether the checkout was clean (the report folder, which the
sweep itself writes, does not count)."""
from __future__ import annotations

import subprocess
from pathlib import Path

from fr_bench.provenance import collect, git_commit


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def test_dirty_ignores_the_report_folder(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "meta.json").write_text("{}\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init")
    assert git_commit(tmp_path)["dirty"] is False
    (tmp_path / "reports" / "meta.json").write_text('{"rewritten": true}\n')
    assert git_commit(tmp_path)["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    info = git_commit(tmp_path)
    assert info["dirty"] is True and len(info["commit"]) == 40


def test_collect_names_software_and_machine() -> None:
    prov = collect(threads=1)
    assert prov["torch_threads"] == 1 and prov["packages"]["torch"].startswith("2.13.0")
    assert prov["torch_cpu_capability"] and prov["cpu_count"] >= 1 and isinstance(prov["gpus"], list)
