"""Micro world generators: deterministic, leak-free splits, real-benchmark schemas, and gold answers that the real
scorers (GSM8K strict match, the MBPP sandbox, lm-eval's IFEval checkers, exact match) all accept."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from fr_bench.micro.config import MicroDataConfig
from fr_bench.micro.data import content_hash, render, task_name
from fr_bench.micro.generators import DOMAINS, constraints, functions, generate_splits
from fr_bench.tasks import get_task

SIZES = dict(n_test=40, n_validation=20, n_train=200)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A written data artifact big enough to hold every code family and every instruction id."""
    root = tmp_path_factory.mktemp("micro_data")
    for name, text in render(MicroDataConfig(seed=3, n_train=400, n_router=40, n_validation=20, n_test=60)).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize("domain", DOMAINS)
def test_splits_are_deterministic_and_seeded(domain: str) -> None:
    a, b = generate_splits(domain, 0, **SIZES), generate_splits(domain, 0, **SIZES)
    assert [(s.row, s.response) for s in a["train"]] == [(s.row, s.response) for s in b["train"]]
    c = generate_splits(domain, 1, **SIZES)
    assert [s.row for s in a["test"]] != [s.row for s in c["test"]]


@pytest.mark.parametrize("domain", DOMAINS)
def test_held_out_groups_never_reach_train(domain: str) -> None:
    splits = generate_splits(domain, 0, **SIZES)
    assert [len(splits[k]) for k in ("test", "validation", "train")] == [40, 20, 200]
    train = {s.group for s in splits["train"]}
    for held in ("test", "validation"):
        groups = [s.group for s in splits[held]]
        assert len(set(groups)) == len(groups) and not set(groups) & train


def test_render_is_byte_stable() -> None:
    cfg = MicroDataConfig(n_train=30, n_router=5, n_validation=5, n_test=5)
    assert content_hash(render(cfg)) == content_hash(render(cfg))
    assert content_hash(render(cfg)) != content_hash(render(MicroDataConfig(seed=1, n_train=30, n_router=5,
                                                                             n_validation=5, n_test=5)))


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("split", ["test", "router"])
def test_gold_responses_score_one_with_the_real_scorers(rendered: Path, domain: str, split: str) -> None:
    task = get_task(task_name(domain), data=str(rendered / domain / f"{split}.jsonl"))
    rows = task.load()
    sft = [json.loads(line) for line in (rendered / "sft" / domain / f"{split}.jsonl").read_text().splitlines()]
    assert len(rows) == len(sft) > 0
    assert [task.user_message(r) for r in rows] == [s["prompt"] for s in sft]  # train prompt == eval prompt
    results = task.score(rows, [s["response"] for s in sft])
    failed = [(r["id"], s["response"]) for r, s, res in zip(rows, sft, results) if not res.correct]
    assert not failed
    assert task.aggregate(results)[task.primary_metric] == 1.0
    # ...and a wrong answer is not accepted: the gold of another row scores below 1
    shifted = task.score(rows, [s["response"] for s in sft[1:] + sft[:1]])
    assert task.aggregate(shifted)[task.primary_metric] < 1.0


def test_wrong_code_fails_in_the_sandbox(rendered: Path) -> None:
    task = get_task("mbpp", data=str(rendered / "code" / "test.jsonl"))
    rows = task.load()[:5]
    broken = [row["code"].replace("return ", "return None and ") for row in rows]
    assert not any(r.correct for r in task.score(rows, broken))


def test_every_code_family_and_instruction_is_generated(rendered: Path) -> None:
    code = [json.loads(x) for x in (rendered / "code" / "train.jsonl").read_text().splitlines()]
    bodies = {row["code"].split("return ")[1].split("(")[0][:6] for row in code}
    assert len(bodies) >= 15
    ifeval = [json.loads(x) for x in (rendered / "if" / "train.jsonl").read_text().splitlines()]
    seen = {i for row in ifeval for i in row["instruction_id_list"]}
    assert seen == set(constraints.SECONDARY)


def test_ifeval_kwargs_have_exactly_each_checkers_keys(rendered: Path) -> None:
    from fr_bench.offline import ensure_nltk_data

    ensure_nltk_data()
    from lm_eval.tasks.ifeval.instructions_registry import INSTRUCTION_DICT

    for line in (rendered / "if" / "test.jsonl").read_text().splitlines():
        row = json.loads(line)
        assert isinstance(row["key"], int) and len(row["instruction_id_list"]) in (1, 2)
        for iid, kw in zip(row["instruction_id_list"], row["kwargs"]):
            checker = INSTRUCTION_DICT[iid](iid)
            checker.build_description(**kw)
            assert set(kw) == set(checker.get_instruction_args_keys()), (iid, kw)


def test_schemas_match_the_real_benchmarks(rendered: Path) -> None:
    first = {d: json.loads((rendered / d / "test.jsonl").read_text().splitlines()[0]) for d in DOMAINS}
    assert set(first["math"]) == {"question", "answer"} and first["math"]["answer"].split("\n")[-1].startswith("####")
    assert set(first["code"]) == {"task_id", "prompt", "code", "test_list", "test_imports"}
    assert len(first["code"]["test_list"]) == 3 and first["code"]["test_imports"] == []
    assert set(first["if"]) == {"key", "prompt", "instruction_id_list", "kwargs"}
    assert set(first["general"]) == {"id", "prompt", "answer"}
    pref = json.loads((rendered / "pref" / "math.jsonl").read_text().splitlines()[0])
    assert {"question", "answer", "response"} <= set(pref)


def test_code_asserts_are_not_all_equal() -> None:
    """A constant function must not pass: each row's three expected values are not all the same."""
    rng = random.Random(0)
    for _ in range(300):
        row = functions.sample(rng).row
        assert len({t.split(" == ")[1] for t in row["test_list"]}) > 1, row
