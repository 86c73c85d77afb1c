"""`python -m fr_bench.score` end to end (subprocess), and the metric aggregation it reports."""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fr_bench.scoring.metrics import aggregate_pass_at_k, aggregate_results, pass_at_k
from fr_bench.tasks import SampleResult

REPO = Path(__file__).resolve().parents[1]


def score_cli(*args: str | Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "fr_bench.score", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.mark.slow
def test_cli_scores_humaneval_and_writes_per_sample_file(tmp_path: Path, shared_data: Path) -> None:
    data = shared_data / "humaneval" / "HumanEval.jsonl.gz"
    rows = [json.loads(line) for line in gzip.open(data, "rt")][:4]
    preds = write_jsonl(tmp_path / "preds.jsonl", [
        {"id": r["task_id"], "output": f"```python\n{r['prompt']}{r['canonical_solution']}```"} for r in rows[:3]
    ] + [{"id": rows[3]["task_id"], "output": "    return None\n"}])
    out = tmp_path / "run" / "metrics.json"
    proc = score_cli("--task", "humaneval", "--predictions", preds, "--data", data, "--out", out)
    assert proc.returncode == 0, proc.stderr
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert last == {"task": "humaneval", "pass@1": 0.75, "n": 4, "samples": 4}
    assert json.loads(out.read_text()) == last
    samples = [json.loads(line) for line in (tmp_path / "run" / "metrics.samples.jsonl").read_text().splitlines()]
    assert [(s["id"], s["correct"]) for s in samples] == [(r["task_id"], i < 3) for i, r in enumerate(rows)]
    assert {"id", "extracted", "gold", "correct", "metrics", "details"} <= set(samples[0])


def test_cli_gsm8k_subset(tmp_path: Path, shared_data: Path) -> None:
    preds = write_jsonl(tmp_path / "g.jsonl", [{"id": 3, "output": "... #### 540"}, {"id": "0", "output": "#### 17"}])
    proc = score_cli("--task", "gsm8k", "--predictions", preds, "--data", shared_data / "gsm8k" / "test.jsonl")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {
        "task": "gsm8k", "exact_match_strict": 0.5, "exact_match_flexible": 0.5, "n": 2}


def test_cli_ifeval_records_each_instruction(tmp_path: Path, shared_data: Path, capsys) -> None:
    """In-process (`main(argv)`), so lm-eval's slow import is shared with the other IFEval tests."""
    from fr_bench.score import main

    preds = write_jsonl(tmp_path / "i.jsonl", [{"id": 1000, "output": "A short reply without commas."}])
    code = main(["--task", "ifeval", "--predictions", str(preds), "--data",
                 str(shared_data / "ifeval" / "input_data.jsonl"), "--out", str(tmp_path / "ifeval.json")])
    assert code == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["n"] == 1 and metrics["inst_level_strict_acc"] == pytest.approx(1 / 3)
    [sample] = [json.loads(line) for line in (tmp_path / "ifeval.samples.jsonl").read_text().splitlines()]
    assert [(i["id"], i["strict"]) for i in sample["details"]["instructions"]] == [
        ("punctuation:no_comma", True), ("detectable_format:number_highlighted_sections", False),
        ("length_constraints:number_words", False)]


@pytest.mark.parametrize("lines, message", [
    ([{"id": "0", "output": "#### 1"}, {"id": "99999", "output": "x"}], "line 2: id '99999'"),
    ([{"id": "0", "output": "#### 1"}, "{not json"], "preds.jsonl:2: not valid JSON"),
    ([{"id": "0"}], "preds.jsonl:1: needs the keys 'id' and 'output'"),
    ([{"id": "0", "output": 5}], "preds.jsonl:1: 'output' must be a string"),
])
def test_cli_rejects_bad_predictions_before_scoring(tmp_path: Path, shared_data: Path, lines: list,
                                                    message: str) -> None:
    preds = write_jsonl(tmp_path / "preds.jsonl", lines)
    out = tmp_path / "m.json"
    proc = score_cli("--task", "gsm8k", "--predictions", preds, "--data", shared_data / "gsm8k" / "test.jsonl",
                     "--out", out)
    assert proc.returncode == 2
    assert message in proc.stderr and proc.stdout == ""
    assert not out.exists() and not (tmp_path / "m.samples.jsonl").exists()


def test_aggregation_sums_lists_and_scalars() -> None:
    results = [SampleResult("a", None, None, True, {"p": 1.0, "i": [1.0, 1.0, 1.0]}),
               SampleResult("b", None, None, False, {"p": 0.0, "i": [0.0]})]
    assert aggregate_results(results, ("p", "i")) == {"p": 0.5, "i": 0.75, "n": 2}
    with pytest.raises(KeyError, match="metric 'q'"):
        aggregate_results(results, ("q",))


def test_pass_at_k_matches_brute_force() -> None:
    from itertools import combinations

    for n, c, k in [(5, 0, 1), (5, 2, 1), (5, 2, 3), (10, 3, 5), (4, 4, 2), (6, 1, 6)]:
        draws = list(combinations([True] * c + [False] * (n - c), k))
        assert pass_at_k(n, c, k) == pytest.approx(sum(any(d) for d in draws) / len(draws))
    with pytest.raises(ValueError, match="k <= n"):
        pass_at_k(3, 1, 5)
    results = [SampleResult(pid, None, None, ok, {}) for pid, ok in
               [("x", True), ("x", False), ("y", False), ("y", False)]]
    assert aggregate_pass_at_k(results, ks=(1, 2, 3)) == {"pass@1": 0.25, "pass@2": 0.5, "n": 2, "samples": 4}
