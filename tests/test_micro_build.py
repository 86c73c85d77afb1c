"""End to end: the tiny micro world builds, every model reloads as a normal checkpoint and generates, a second
build trains nothing, a changed config rebuilds only what depends on the change, an interrupted build leaves nothing
behind, and the CLI prints the specialisation table."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fr_bench.cache import is_complete
from fr_bench.config import ConfigError, load_config
from fr_bench.micro.build import MODELS, build_micro_world, specialisation_table
from fr_bench.micro.generators import DOMAINS
from fr_bench.micro.config import MicroConfig
from fr_bench.micro.status import to_build

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "experiments" / "micro_tiny.yaml"
ALL = ["data", "tokenizer", "base", "expert_math", "expert_code", "expert_if"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("micro_cache")


@pytest.fixture(scope="module")
def first_build(cache: Path):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FR_BENCH_CACHE", str(cache))
        return build_micro_world(load_config(MicroConfig, TINY))


@pytest.fixture
def in_cache(cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FR_BENCH_CACHE", str(cache))
    return cache


def test_first_build_makes_everything(first_build) -> None:
    world, info = first_build
    assert info["built"] == ALL
    assert list(world.experts) == ["math", "code", "if"]
    assert world.router_init == world.experts["if"]   # MicroConfig.router_init: the paper starts from the IF expert
    assert set(world.sft_data) == set(world.pref_prompts) == set(DOMAINS)
    assert {n: s.task for n, s in world.tasks.items()} == {
        "micro_math": "gsm8k", "micro_code": "mbpp", "micro_if": "ifeval", "micro_general": "exact_match",
        "micro_mixed": "mixed"}
    for path in [world.tokenizer, world.base, *world.experts.values()]:
        assert is_complete(path)
    for spec in world.tasks.values():
        assert len(Path(spec.data).read_text().splitlines()) == 4
    # router SFT rows are held out: none of them is an expert's training row
    for domain, path in world.sft_data.items():
        router = {json.loads(x)["prompt"] for x in Path(path).read_text().splitlines()}
        train = {json.loads(x)["prompt"] for x in (Path(path).parent / "train.jsonl").read_text().splitlines()}
        assert router and not router & train, domain


def test_models_reload_as_plain_checkpoints_and_generate(first_build) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fr_bench.chat import format_prompt
    from fr_bench.decoding.engine import DecodeEngine
    from fr_bench.decoding.policies import SingleModel

    world, info = first_build
    tok = AutoTokenizer.from_pretrained(world.tokenizer)
    prompt = format_prompt(tok, "What is the capital of Peru?")
    assert prompt.startswith(tok.bos_token) and prompt.endswith("<|assistant|>\n")
    prompts = [prompt, format_prompt(tok, "Reverse: a b")]
    for path in [world.base, *world.experts.values()]:
        assert AutoTokenizer.from_pretrained(path).get_vocab() == tok.get_vocab()  # each folder is self-contained
        model = AutoModelForCausalLM.from_pretrained(path)
        assert type(model).__name__ == "LlamaForCausalLM"
        outs, _ = DecodeEngine([model], SingleModel(), tok).generate(prompts, max_new_tokens=5)
        assert len(outs) == 2 and all(isinstance(o.text, str) for o in outs)
        for p, out in zip(prompts, outs):      # the table's decode path (a left-padded batch) == HF generate alone
            ids = tok(p, add_special_tokens=False, return_tensors="pt")["input_ids"]
            ref = model.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
            assert out.token_ids == ref[0, ids.shape[1]:].tolist()
    info_json = json.loads((Path(world.experts["math"]) / "train_info.json").read_text())
    assert info_json["result"]["steps"] == 3 and info_json["base"] == info["keys"]["base"]
    assert (Path(world.base) / "logs" / "base" / "version_0" / "metrics.csv").is_file()


def test_second_build_trains_nothing(first_build, in_cache: Path) -> None:
    world, info = first_build
    stamp = {p: (Path(p) / "model.safetensors").stat().st_mtime_ns for p in [world.base, *world.experts.values()]}
    world2, info2 = build_micro_world(load_config(MicroConfig, TINY, ["base.progress_bar=true"]))
    assert info2["built"] == []  # report-only settings do not change any artifact
    assert world2 == world
    assert {p: (Path(p) / "model.safetensors").stat().st_mtime_ns for p in stamp} == stamp


def test_changed_config_rebuilds_only_what_depends_on_it(first_build, in_cache: Path) -> None:
    world, info = first_build
    world2, info2 = build_micro_world(load_config(MicroConfig, TINY, ["expert_steps={code: 4}"]))
    assert info2["built"] == ["expert_code"]
    assert world2.base == world.base and world2.experts["math"] == world.experts["math"]
    assert world2.experts["code"] != world.experts["code"]
    _, info3 = build_micro_world(load_config(MicroConfig, TINY, ["base.lr=0.002"]))
    assert info3["built"] == ["base", "expert_math", "expert_code", "expert_if"]  # data and tokenizer reused


def test_to_build_says_what_a_build_would_train(first_build, in_cache: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The dry run's view of the world: built models are cached, a changed setting names exactly what it retrains
    (the same list `build_micro_world` then reports as built), an empty cache names everything."""
    cfg = load_config(MicroConfig, TINY)
    changed = load_config(MicroConfig, TINY, ["expert_steps={math: 2}"])
    assert to_build([cfg, changed]) == [[], ["expert_math"]]
    assert build_micro_world(changed)[1]["built"] == ["expert_math"]
    assert to_build([changed]) == [[]]
    monkeypatch.setenv("FR_BENCH_CACHE", str(tmp_path))
    assert to_build([cfg]) == [ALL]


def test_base_domains_choose_the_bases_data(first_build, in_cache: Path) -> None:
    """base_domains=[math, code, if, general]: a new base (and experts) trained on those domains' rows only."""
    world, _ = first_build
    world2, info2 = build_micro_world(load_config(MicroConfig, TINY, ["base_domains=[math,code,if,general]"]))
    assert info2["built"] == ["base", "expert_math", "expert_code", "expert_if"]
    before = json.loads((Path(world.base) / "train_info.json").read_text())
    after = json.loads((Path(world2.base) / "train_info.json").read_text())
    assert before["domains"] == list(DOMAINS) and after["domains"] == ["math", "code", "if", "general"]
    assert after["train_rows"] == before["train_rows"] * 4 // 5
    with pytest.raises(ConfigError, match="base_domains"):
        load_config(MicroConfig, TINY, ["base_domains=[math,poetry]"]).validate()


def test_interrupted_build_leaves_nothing(first_build, in_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fr_bench.micro.build as build

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "fit_causal_lm", boom)
    before = sorted(p.name for p in (in_cache / "micro_expert").iterdir())
    with pytest.raises(KeyboardInterrupt):
        build_micro_world(load_config(MicroConfig, TINY, ["expert.lr=0.005"]))
    assert sorted(p.name for p in (in_cache / "micro_expert").iterdir()) == before


def test_table_and_cli(first_build, in_cache: Path, capsys: pytest.CaptureFixture) -> None:
    from fr_bench.micro.__main__ import main

    cfg = load_config(MicroConfig, TINY)
    world, info = build_micro_world(cfg)
    table = specialisation_table(cfg, world, info)
    assert list(table) == list(MODELS)
    assert all(set(row) == set(DOMAINS) and all(0 <= v <= 1 for v in row.values())
               for row in table.values())
    assert info["built"] == [f"eval_{m}" for m in MODELS]
    samples = sorted((in_cache / "micro_eval").glob("*/samples_*.jsonl"))    # per-sample outputs of every model
    assert len(samples) == len(MODELS) * len(world.tasks)
    assert all(len(rows := f.read_text().splitlines()) == cfg.data.n_validation  # the table reads validation
               and all("output" in json.loads(r) for r in rows) for f in samples)
    assert main(["build", str(TINY), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["accuracy"] == out["per_seed"]["0"] == table and out["info"]["0"]["built"] == []  # cached evals
    assert main(["build", str(TINY), "--seeds", "0", "1", "--json"]) == 0   # seed 1's world is new; seed 0 cached
    both = json.loads(capsys.readouterr().out)
    assert both["per_seed"]["0"] == table and both["info"]["1"]["built"][:1] == ["base"]
    assert both["accuracy"] == {m: {d: (v + both["per_seed"]["1"][m][d]) / 2 for d, v in row.items()}
                                for m, row in table.items()}
    assert main(["build", str(TINY), "nonsense.key=1"]) == 2


def test_experts_trained_in_parallel_equal_the_serial_build(first_build, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    from fr_bench.micro.__main__ import main

    _, serial = first_build
    monkeypatch.setenv("FR_BENCH_CACHE", str(tmp_path))
    assert main(["build", str(TINY), "--workers", "2", "--no-table", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)["info"]["0"]
    assert info["built"] == ALL and info["keys"] == serial["keys"]
    for name in MODELS:
        assert (Path(info["paths"][name]) / "model.safetensors").read_bytes() == \
            (Path(serial["paths"][name]) / "model.safetensors").read_bytes(), name
    assert main(["build", str(TINY), "--workers", "0"]) == 2


def test_seeded_worlds_share_data_and_train_their_own_models(first_build, in_cache: Path) -> None:
    """`MicroConfig.for_seed`: seed 0 is the configured world (found in the cache); seed 2 trains new weights on
    the same data and tokenizer, its base and experts in one wave each."""
    import torch
    from safetensors.torch import load_file

    from fr_bench.micro.build import build_micro_worlds

    world, _ = first_build
    cfg = load_config(MicroConfig, TINY)
    (w0, info0), (w1, info1) = build_micro_worlds([cfg.for_seed(0), cfg.for_seed(2)])
    assert info0["built"] == info1["built"] == ["base", "expert_math", "expert_code", "expert_if"]  # seed 2 only
    assert w0.base == world.base and w0.experts == world.experts
    assert w1.tokenizer == w0.tokenizer and w1.sft_data == w0.sft_data and w1.tasks == w0.tasks
    assert w1.base != w0.base and set(w1.experts.values()).isdisjoint(w0.experts.values())
    a, b = (load_file(str(Path(w.base) / "model.safetensors")) for w in (w0, w1))
    assert not all(torch.equal(a[k], b[k]) for k in a)
