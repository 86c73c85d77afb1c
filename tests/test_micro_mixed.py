"""micro_mixed: generated rows whose gold passes every real check (sandboxed asserts, GSM8K strict extraction,
lm-eval's IFEval checkers) and whose home-domain segment alone does not; the scripted oracle policy follows its
schedule through the real decode engine on tiny models."""
from __future__ import annotations

import re

import pytest
import torch

from fr_bench.decoding.engine import DecodeEngine
from fr_bench.decoding.policies import SingleModel
from fr_bench.micro.generators import generate_splits
from fr_bench.micro.generators.mixed import KINDS
from fr_bench.micro.oracle import ScheduledExpert, oracle_outputs, token_schedule
from fr_bench.tasks import get_task
from fr_bench.tasks.mixed import function_block
from tiny_lms import WORDS, one_thread, tiny_lm, tiny_tokenizer


@pytest.fixture(scope="module")
def mixed_rows() -> list[dict]:
    samples = generate_splits("mixed", 0, n_test=60, n_validation=0, n_train=0)["test"]
    rows = [{"id": str(i), **s.row} for i, s in enumerate(samples)]
    for row, s in zip(rows, samples):
        assert "".join(seg["text"] for seg in row["segments"]) == s.response  # the segments are the gold response
    return rows


def gold(row: dict) -> str:
    return "".join(seg["text"] for seg in row["segments"])


def test_every_kind_appears_and_mixes_two_domains(mixed_rows: list[dict]) -> None:
    assert {r["kind"] for r in mixed_rows} == set(KINDS)
    for row in mixed_rows:
        assert len({seg["domain"] for seg in row["segments"]}) == 2, row
        assert len(row["checks"]) >= 1 + (row["kind"] != "math_code")


def test_gold_passes_every_check_and_one_domain_alone_fails(mixed_rows: list[dict]) -> None:
    task = get_task("mixed")
    assert all(r.correct for r in task.score(mixed_rows, [gold(r) for r in mixed_rows]))
    for domain in ("math", "if"):  # a response from one expert's segments only misses the other expert's part
        alone = ["".join(s["text"] for s in r["segments"] if s["domain"] == domain) for r in mixed_rows]
        assert not any(r.correct for r in task.score(mixed_rows, alone))


def test_a_wrong_number_or_a_missed_constraint_fails(mixed_rows: list[dict]) -> None:
    task = get_task("mixed")
    math_code = next(r for r in mixed_rows if r["kind"] == "math_code")
    off_by_one = re.sub(r"return (.*?)(\d+)$", lambda m: f"return {m[1]}{int(m[2]) + 1}", gold(math_code))
    math_if = next(r for r in mixed_rows if r["kind"] == "math_if")
    unconstrained = "".join(s["text"] for s in math_if["segments"] if s["domain"] == "math")
    wrong_answer = re.sub(r"#### (\d+)", lambda m: f"#### {int(m[1]) + 1}", gold(math_if))
    res = task.score([math_code, math_if, math_if], [off_by_one, unconstrained, wrong_answer])
    assert [r.correct for r in res] == [False, False, False]
    assert res[1].details["checks"] == {"gsm8k": True, "ifeval": False}
    assert res[2].details["checks"] == {"gsm8k": False, "ifeval": True}


def test_function_block_keeps_only_the_function() -> None:
    text = "<<f>>\n3 + 4 = 7\ndef f(x):\n    return x + 7\nThe function f returns x plus 7."
    assert function_block(text) == "def f(x):\n    return x + 7\n"
    assert function_block("no code here") == "no code here"


def test_token_schedule_follows_segment_boundaries() -> None:
    tok = tiny_tokenizer()
    segments = [{"domain": "a", "text": "w5 w6"}, {"domain": "b", "text": " w7 w8"}, {"domain": "a", "text": " w9"}]
    assert token_schedule(tok, segments, {"a": 0, "b": 1}) == [0, 0, 1, 1, 0]
    with pytest.raises(KeyError, match="no model"):
        token_schedule(tok, segments, {"a": 0})


def test_scripted_oracle_decodes_each_token_with_its_scheduled_model() -> None:
    """The oracle's tokens equal a hand-run: model 0 greedy for two tokens, then model 1 greedy on that prefix."""
    tok = tiny_tokenizer()
    a, b = tiny_lm("llama", 1), tiny_lm("llama", 2)
    prompt = " ".join(WORDS[10:16])
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    with one_thread():
        engine = DecodeEngine([a, b], ScheduledExpert([0, 0, 1]), tok, eos_ids=set())
        (out,), _ = engine.generate([prompt], 4, batch_size=1)
        (first,), _ = DecodeEngine([a], SingleModel(0), tok, eos_ids=set()).generate([prompt], 2)
        with torch.inference_mode():
            prefix = torch.tensor([ids + first.token_ids])
            t3 = b(prefix).logits[0, -1].argmax().item()
            t4 = b(torch.cat([prefix, torch.tensor([[t3]])], 1)).logits[0, -1].argmax().item()
        assert out.expert_choices == [0, 0, 1, 1]
        assert out.token_ids == first.token_ids + [t3, t4]
        segs = [{"domain": "math", "text": "w1 w2"}, {"domain": "code", "text": " w3 w4"}]
        (direct,), _ = DecodeEngine([a, b], ScheduledExpert([0, 0, 1, 1]), tok).generate([prompt], 4)
        assert oracle_outputs([a, b], {"math": 0, "code": 1}, tok, [prompt], [segs], 4) == [direct.text]
        with pytest.raises(ValueError, match="one prompt at a time"):
            DecodeEngine([a, b], ScheduledExpert([0]), tok, eos_ids=set()).generate([prompt, prompt], 2)


def test_expert_trains_only_on_its_own_segments_of_a_mixed_row(tmp_path) -> None:
    """With expert_mixed_segments, the math expert's copy of a math_code row has labels on the math lines only."""
    from fr_bench.micro.build import expert_rows
    from fr_bench.micro.config import MicroConfig
    from fr_bench.micro.data import render
    from fr_bench.training.data import SFTDataset

    cfg = MicroConfig(expert_mixed_segments=True)
    cfg.data.n_train, cfg.data.n_router, cfg.data.n_validation, cfg.data.n_test = 30, 0, 0, 0
    for name, text in render(cfg.data).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    rows = expert_rows(cfg, tmp_path, "math")
    mixed = [r for r in rows if "spans" in r]
    assert len(rows) == 30 + len(mixed) and mixed
    assert all(any(keep for _, keep in r["spans"]) for r in mixed)
    tok = tiny_tokenizer(sorted({w for r in mixed for w in r["response"].split()}))
    row = next(r for r in mixed if r["spans"][-1][1] is False)  # math first, then another expert's part
    (ex,) = SFTDataset.from_rows([{**row, "response": " ".join(row["response"].split()),
                         "spans": [(" ".join(t.split()) + (" " if i < len(row["spans"]) - 1 else ""), keep)
                                   for i, (t, keep) in enumerate(row["spans"])]}], tok).examples
    trained = [tok.convert_ids_to_tokens(t) for t in ex["labels"] if t != -100]
    assert " ".join(trained) == " ".join(row["spans"][0][0].split())


def test_mixed_task_names_a_bad_check(tmp_path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": 0, "prompt": "p", "checks": {"humaneval": {}}}\n')
    with pytest.raises(ValueError, match=r"checks \['humaneval'\].*'gsm8k', 'mbpp', 'ifeval'"):
        get_task("mixed", data=str(path)).load()


def _last_json(script: str, *args: str) -> dict:
    import json
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, str(repo / "benchmarks" / script), *args], cwd=repo, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_micro_mixed_benchmark_prints_both_oracles() -> None:
    result = _last_json("micro_mixed.py", "--sweep", "experiments/smoke.yaml", "--no-fusionroute")
    assert {"seq_oracle", "token_oracle", "fusionroute", "switch_rate"} <= set(result)
    assert 0 <= result["seq_oracle"] <= 100 and 0 <= result["token_oracle"] <= 100 and result["n"] == 8


@pytest.mark.slow
def test_world_stability_prints_the_differences() -> None:
    result = _last_json("world_stability.py", "--config", "experiments/micro_tiny.yaml", "--seeds", "0", "1")
    assert set(result["diffs"]) == {"base", "expert_math", "expert_code", "expert_if"}
    assert result["max_abs_diff_points"] == max(abs(v) for row in result["diffs"].values() for v in row.values())
    avx2, generic = (result["per_seed"][k] for k in ("avx2", "default"))
    assert set(avx2) == set(generic) == {"0", "1"}            # one world per seed under each kernel set
    mean = {m: {d: (avx2["0"][m][d] + avx2["1"][m][d]) / 2 for d in row} for m, row in avx2["0"].items()}
    assert result["tables"]["avx2"] == mean                    # the compared table is the seed mean
    assert result["inside_intervals"].endswith(f"/{sum(len(r) for r in result['diffs'].values())}")


@pytest.mark.slow
def test_world_stability_compares_whole_sweeps(tmp_path) -> None:
    """--sweep: the same sweep under both kernel sets, compared method by method as compare --all-methods does."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    sweep = tmp_path / "kernels.yaml"
    sweep.write_text(f"name: kernels\nworld: {{kind: micro, micro_config: {repo / 'experiments/micro_smoke.yaml'}}}\n"
                     "seeds: [0]\nlimit: 4\nthreads: 1\nexecutor: {kind: local, workers: 1}\n"
                     "methods:\n  expert_math: {method: single_model, group: expert, options: {model: math}}\n"
                     "  base: {method: single_model, group: expert, options: {model: base}}\n"
                     "reference_method: base\n")
    result = _last_json("world_stability.py", "--sweep", str(sweep))
    assert set(result["avg_diff_points"]) == {"base", "expert_math"}
    assert set(result["reports"]) == {"avx2", "default"} and all(Path(r, "report.md").exists()
                                                                 for r in result["reports"].values())
    assert result["max_abs_diff_points"] >= max(abs(v) for v in result["avg_diff_points"].values())
    assert set(result["significant_methods"]) <= {"base", "expert_math"}
