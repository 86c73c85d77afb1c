"""The pairwise judge with fake transports (never the network): order swapping, outcome rules, win-rate maths,
retries, the urllib request it builds, the win-rate rows it writes back into a sweep, and its verdict cache, which
a re-run judge and a re-assembled sweep both reuse."""
from __future__ import annotations

import io
import json
import re
import threading
import urllib.error
from pathlib import Path

import pytest

from fr_bench.config import ConfigError, load_config
from fr_bench.reports import judge as J
from fr_bench.reports.judge import (JudgeConfig, JudgeError, PairJudgment, PairwiseJudge, TransportError, Verdict,
                                    judge_sweep, parse_verdict, urllib_transport, write_win_rates)
from fr_bench.reports.schema import (ResultRow, SweepFormatError, SweepMeta, load_sweep, write_meta, write_results,
                                     write_samples)
from fr_bench.reports.summary import summarize

ANSWERS = re.compile(r"\[Answer A\]\n(.*)\n\[End of Answer A\]\n\n\[Answer B\]\n(.*)\n\[End of Answer B\]", re.S)


class FakeJudge:
    """Reads the two answers out of the prompt and replies with `decide(a, b)`; records every call."""

    def __init__(self, decide) -> None:
        self.decide = decide
        self.calls: list[tuple[str, dict, dict]] = []
        self.lock = threading.Lock()

    def __call__(self, url: str, headers: dict, payload: dict, timeout: float) -> dict:
        a, b = ANSWERS.search(payload["messages"][-1]["content"]).groups()
        with self.lock:
            self.calls.append((url, headers, payload))
        return {"choices": [{"message": {"content": f"Reasoning...\n{self.decide(a, b)}"}}],
                "usage": {"total_tokens": 7}}


def prefers_good(a: str, b: str) -> str:
    if ("GOOD" in a) == ("GOOD" in b):
        return "[[C]]"
    return "[[A]]" if "GOOD" in a else "[[B]]"


@pytest.fixture(autouse=True)
def judge_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test starts with an empty judge cache."""
    monkeypatch.setenv("FR_BENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch) -> JudgeConfig:
    monkeypatch.setenv("FAKE_JUDGE_KEY", "sk-test")
    return JudgeConfig(base_url="http://judge.invalid/v1/", model="judge-model", api_key_env="FAKE_JUDGE_KEY",
                       concurrency=1)


def test_parse_verdict() -> None:
    assert parse_verdict("A is better. [[A]]") == "A"
    assert parse_verdict('format: "[[A]]" or "[[B]]" ... final: [[B]]') == "B"   # the last one counts
    assert parse_verdict("[[C]]") == "tie"
    assert parse_verdict("I cannot decide") == "invalid"


def test_both_orders_and_win_rate(config: JudgeConfig) -> None:
    fake = FakeJudge(prefers_good)
    judge = PairwiseJudge(config, fake)
    # ids 0-5: only the method is GOOD (win); 6-7: only the reference (loss); 8-9: both (tie)
    items = [(f"q{i}", "GOOD m" if i < 6 or i >= 8 else "bad m", "GOOD r" if i >= 6 else "bad r")
             for i in range(10)]
    judgments = judge.judge_many(items)
    assert [j.outcome for j in judgments] == ["win"] * 6 + ["loss"] * 2 + ["tie"] * 2
    row = J.win_rate_row("s", "m", "win_rate", 0, judgments, 10, 0.0, None)
    assert row.primary == pytest.approx((6 + 0.5 * 2) / 10)
    assert row.metrics["win"] == 0.6 and row.metrics["loss"] == 0.2 and row.metrics["tie"] == 0.2
    # every prompt is asked twice, the method's answer once as A and once as B
    assert len(fake.calls) == 20
    shown_first = [ANSWERS.search(p["messages"][-1]["content"]).group(1) for _, _, p in fake.calls]
    assert shown_first[0::2] == [m for _, m, _ in items] and shown_first[1::2] == [r for _, _, r in items]
    url, headers, payload = fake.calls[0]
    assert url == "http://judge.invalid/v1/chat/completions"
    assert headers["Authorization"] == "Bearer sk-test"
    assert (payload["model"], payload["temperature"]) == ("judge-model", 0.0)
    assert judgments[0].method_first.tokens == 7


def test_position_bias_cancels(config: JudgeConfig) -> None:
    judge = PairwiseJudge(config, FakeJudge(lambda a, b: "[[A]]"))   # always prefers whatever comes first
    judgments = judge.judge_many([(f"q{i}", "GOOD", "bad") for i in range(8)])
    assert {j.outcome for j in judgments} == {"tie"}
    row = J.win_rate_row("s", "m", "win_rate", 0, judgments, 0, 0.0, None)
    assert row.primary == 0.5 and row.metrics["first_position"] == 1.0


def test_outcome_rules() -> None:
    a, b, tie, bad = Verdict("A", ""), Verdict("B", ""), Verdict("tie", ""), Verdict("invalid", "")
    # method_first: the method is A; method_second: the method is B
    assert PairJudgment(a, b).outcome == "win"
    assert PairJudgment(b, a).outcome == "loss"
    assert PairJudgment(a, a).outcome == "tie"        # inconsistent across orders = position bias
    assert PairJudgment(a, tie).outcome == "tie"      # winning one order only is not a win
    assert PairJudgment(bad, b).outcome == "tie"
    judgments = [PairJudgment(a, b), PairJudgment(bad, bad)]
    row = J.win_rate_row("s", "m", "win_rate", 0, judgments, 0, 0.0, None)
    assert row.metrics["invalid"] == 0.5 and row.primary == 0.75


def test_retries_then_gives_up(config: JudgeConfig) -> None:
    failures = [TransportError("HTTP 429", True), TransportError("timeout", True)]
    ok = FakeJudge(lambda a, b: "[[B]]")

    def flaky(*args):
        if failures:
            raise failures.pop(0)
        return ok(*args)

    slept: list[float] = []
    judge = PairwiseJudge(config, flaky, sleep=slept.append)
    assert judge.verdict("q", "x", "y").choice == "B"
    assert slept == [2.0, 4.0]

    def unauthorized(*args):
        raise TransportError("HTTP 401 from judge: bad key", False)

    slept.clear()
    with pytest.raises(JudgeError, match="after 1 attempt"):
        PairwiseJudge(config, unauthorized, sleep=slept.append).verdict("q", "x", "y")
    assert slept == []
    with pytest.raises(JudgeError, match="OpenAI-compatible"):
        PairwiseJudge(config, lambda *a: {"error": "nope"}).verdict("q", "x", "y")


def test_config_checks_and_template(config: JudgeConfig, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FAKE_JUDGE_KEY")
    with pytest.raises(ConfigError, match="FAKE_JUDGE_KEY"):
        PairwiseJudge(config, FakeJudge(prefers_good))
    no_auth = JudgeConfig(base_url="http://localhost:8000/v1", api_key_env="")
    assert "Authorization" not in PairwiseJudge(no_auth, FakeJudge(prefers_good)).headers
    with pytest.raises(ConfigError, match="answer_b"):
        PairwiseJudge(JudgeConfig(base_url="x", api_key_env="", prompt_template="{question} {answer_a}"))
    judge = PairwiseJudge(JudgeConfig(base_url="x", api_key_env="", prompt_template="Q={question} A={answer_a} "
                                                                                    "B={answer_b} {json}"))
    assert judge.prompt("what {x}?", "{answer_b}", "b") == "Q=what {x}? A={answer_b} B=b {json}"
    yaml = tmp_path / "judge.yaml"
    yaml.write_text("base_url: http://localhost:8000/v1\nmodel: local\napi_key_env: ''\n"
                    "prompt_template: 'Q: {question} 1: {answer_a} 2: {answer_b} -> [[A]]/[[B]]/[[C]]'\n")
    cfg = load_config(JudgeConfig, yaml, ["concurrency=2"])
    assert (cfg.model, cfg.concurrency, cfg.temperature) == ("local", 2, 0.0)


class _Response(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_urllib_transport_builds_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}

    def fake_urlopen(request, timeout):
        seen.update(url=request.full_url, method=request.get_method(), body=json.loads(request.data),
                    auth=request.get_header("Authorization"), timeout=timeout)
        return _Response(json.dumps({"choices": [{"message": {"content": "[[A]]"}}]}).encode())

    monkeypatch.setattr(J.urllib.request, "urlopen", fake_urlopen)
    out = urllib_transport("http://judge.invalid/v1/chat/completions", {"Authorization": "Bearer k"},
                           {"model": "m"}, 5.0)
    assert out["choices"][0]["message"]["content"] == "[[A]]"
    assert seen == {"url": "http://judge.invalid/v1/chat/completions", "method": "POST", "body": {"model": "m"},
                    "auth": "Bearer k", "timeout": 5.0}

    def http_error(code):
        def raise_(request, timeout):
            raise urllib.error.HTTPError(request.full_url, code, "err", {}, io.BytesIO(b"slow down"))
        return raise_

    monkeypatch.setattr(J.urllib.request, "urlopen", http_error(429))
    with pytest.raises(TransportError, match="HTTP 429.*slow down") as exc:
        urllib_transport("http://judge.invalid", {}, {}, 1.0)
    assert exc.value.retryable
    monkeypatch.setattr(J.urllib.request, "urlopen", http_error(401))
    with pytest.raises(TransportError) as exc:
        urllib_transport("http://judge.invalid", {}, {}, 1.0)
    assert not exc.value.retryable


GOOD = {"fusionroute": {0, 1, 2}, "finetuned": {2, 3}, "collab": set()}


def _samples(method: str, ids: set[int]) -> list[dict]:
    return [{"id": f"s{i}", "prompt": f"question {i}", "output": f"{'GOOD' if i in ids else 'bad'} {method}",
             "extracted": None, "gold": None, "correct": True, "metrics": {"acc": 1.0}, "expert_choices": None,
             "tokens": None, "cost_tokens": 3} for i in range(4)]


def _general_sweep(root: Path) -> Path:
    """Task 'gen' with 4 prompts; finetuned is the judge's opponent. fusionroute is GOOD on s0-s2, finetuned on
    s2-s3, collab never: fusionroute wins s0, s1, ties s2, loses s3 -> 0.625; collab loses s2, s3, ties -> 0.25."""
    rows = []
    for method, ids in GOOD.items():
        write_samples(root, method, "gen", 0, _samples(method, ids))
        rows.append(ResultRow(sweep="g", method=method, task="gen", domain="general", seed=0, n=4,
                              primary_metric="acc", primary=1.0, metrics={"acc": 1.0}, cost_tokens=12, wall_s=1.0,
                              method_group="fusionroute" if method == "fusionroute" else "baseline"))
    write_results(root, rows)
    write_meta(root, SweepMeta(sweep="g", expert_names=[], reference_method="fusionroute", methods=list(GOOD),
                               tasks=["gen"], seeds=[0], created="2026-01-01T00:00:00"))
    return root


def test_judge_sweep_writes_a_win_rate_benchmark(config: JudgeConfig, tmp_path: Path) -> None:
    root = _general_sweep(tmp_path / "g")
    config.task, config.reference_method, config.concurrency = "gen", "finetuned", 3
    fake = FakeJudge(prefers_good)
    win_rates = judge_sweep(load_sweep(root), config, fake)
    by_method = {w.method: w for w in win_rates}
    assert by_method["fusionroute"].result.primary == 0.625
    assert by_method["collab"].result.primary == 0.25
    assert by_method["finetuned"].result.primary == 0.5            # against itself: tie by definition
    assert len(fake.calls) == 2 * 4 * 2                             # two judged methods x 4 prompts x 2 orders
    write_win_rates(load_sweep(root), config, win_rates)
    sweep = load_sweep(root)
    assert "win_rate" in sweep.meta.tasks
    rows = sweep.samples("fusionroute", "win_rate", 0)
    assert [r["extracted"] for r in rows] == ["win", "win", "tie", "loss"]
    assert rows[3]["judge"]["method_first"]["verdict"] == "B" and rows[3]["judge"]["reference_output"] == \
        "GOOD finetuned"
    summary = summarize(sweep, n_resamples=200)
    assert "win_rate" in summary.columns()
    assert summary.scores[("collab", "win_rate")].interval.mean == 0.25
    # a second judge run replaces the first instead of duplicating rows
    write_win_rates(load_sweep(root), config, win_rates)
    assert sum(r.task == "win_rate" for r in load_sweep(root).results) == 3


def test_judge_sweep_names_bad_choices(config: JudgeConfig, tmp_path: Path) -> None:
    sweep = load_sweep(_general_sweep(tmp_path / "g"))
    config.task, config.reference_method = "gen", "nobody"
    with pytest.raises(SweepFormatError, match="reference_method 'nobody' has no results on task 'gen'"):
        judge_sweep(sweep, config, FakeJudge(prefers_good))
    config.reference_method, config.methods = "finetuned", ["ghost"]
    with pytest.raises(SweepFormatError, match=r"methods \['ghost'\] have no results"):
        judge_sweep(sweep, config, FakeJudge(prefers_good))


def test_cli_through_urllib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    root = _general_sweep(tmp_path / "g")
    fake = FakeJudge(prefers_good)

    def fake_urlopen(request, timeout):
        return _Response(json.dumps(fake(request.full_url, dict(request.headers), json.loads(request.data),
                                         timeout)).encode())

    monkeypatch.setattr(J.urllib.request, "urlopen", fake_urlopen)
    args = [str(root), "--no-render", "base_url=http://judge.invalid/v1", "api_key_env=''", "task=gen",
            "reference_method=finetuned", "methods=[fusionroute]"]
    assert J.main(args) == 0
    out = capsys.readouterr().out
    assert re.search(r"fusionroute\s+0\s+4\s+62\.5", out)
    assert [r.primary for r in load_sweep(root).results if r.task == "win_rate"] == [0.625]
    assert J.main([str(root), "--no-render", "task=gen"]) == 2                 # base_url is required
    assert "base_url" in capsys.readouterr().err


def _write_cell(key: str, method: str, ids: set[int]) -> None:
    """A finished evaluation cell of `method` on task 'gen', as the sweep's cells write it."""
    from fr_bench.cache import atomic_dir
    from fr_bench.sweep.cells import cell_dir

    if cell_dir(key).exists():
        import shutil

        shutil.rmtree(cell_dir(key))
    with atomic_dir(cell_dir(key)) as tmp:
        (tmp / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in _samples(method, ids)))
        (tmp / "result.json").write_text(json.dumps(
            {"method": method, "task": "gen", "domain": "general", "n": 4, "primary_metric": "acc", "primary": 1.0,
             "metrics": {"acc": 1.0}, "cost_tokens": 12, "wall_s": 1.0, "seed": 0}))


def test_verdicts_are_cached_and_survive_a_reassembled_sweep(config: JudgeConfig, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from fr_bench.reports.__main__ import main as reports_main
    from fr_bench.sweep.config import MethodEntry, SweepConfig
    from fr_bench.sweep.plan import Cell, Plan
    from fr_bench.sweep.run import assemble
    from fr_bench.world import TaskSpec

    groups = {"fusionroute": "fusionroute", "finetuned": "baseline", "collab": "baseline"}
    cfg = SweepConfig(name="g", methods={m: MethodEntry(method="single_model", group=g) for m, g in groups.items()})
    plan = Plan("w", [], [Cell(m, cfg.methods[m], "gen", TaskSpec("exact_match"), 0, f"cell-{m}") for m in groups])
    world = SimpleNamespace(expert_names=[], tasks={"gen": None})
    for m, ids in GOOD.items():
        _write_cell(f"cell-{m}", m, ids)
    out = tmp_path / "report"
    config.task, config.reference_method = "gen", "finetuned"

    def win_rates() -> dict[str, float]:
        return {r.method: r.primary for r in load_sweep(out).results if r.task == "win_rate"}

    assemble(plan, world, cfg, out)
    fake = FakeJudge(prefers_good)
    first = judge_sweep(load_sweep(out), config, fake)
    assert len(fake.calls) == 16 and not any(w.cached for w in first)
    write_win_rates(load_sweep(out), config, first)
    expected = {"fusionroute": 0.625, "collab": 0.25, "finetuned": 0.5}
    assert win_rates() == expected

    # the sweep runs again: assemble rewrites results.jsonl and meta.json from the cells, the win rates come back
    assemble(plan, world, cfg, out)
    assert win_rates() == expected and "win_rate" in load_sweep(out).meta.tasks
    assert load_sweep(out).samples("collab", "win_rate", 0)[2]["judge"]["outcome"] == "loss"
    assert reports_main([str(out)]) == 0
    table = (out / "tables" / "main.md").read_text()
    assert "| win_rate |" in table.splitlines()[0] and "| **62.5** ± 37.5 |" in table
    assert table in (out / "report.md").read_text()

    # a second judge run makes no call, and needs no API key for that
    monkeypatch.delenv("FAKE_JUDGE_KEY")
    again = FakeJudge(prefers_good)
    second = judge_sweep(load_sweep(out), config, again)
    assert again.calls == [] and all(w.cached for w in second)
    assert {w.method: w.result.primary for w in second} == expected
    assert [w.rows for w in second] == [w.rows for w in first]

    # collab's answers change: its old verdicts are not re-attached, and only collab is judged again
    monkeypatch.setenv("FAKE_JUDGE_KEY", "sk-test")
    _write_cell("cell-collab", "collab", {0, 1, 2, 3})
    assemble(plan, world, cfg, out)
    assert win_rates() == {"fusionroute": 0.625, "finetuned": 0.5}
    third = FakeJudge(prefers_good)
    rejudged = judge_sweep(load_sweep(out), config, third)
    assert len(third.calls) == 8 and [w.method for w in rejudged if not w.cached] == ["collab"]
    write_win_rates(load_sweep(out), config, rejudged)
    assert win_rates()["collab"] == 0.75   # GOOD everywhere: wins s0, s1, ties s2, s3
