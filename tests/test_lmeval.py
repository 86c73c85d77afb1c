"""lm-evaluation-harness drives fr_bench: lm-eval's own GSM8K and IFEval task definitions over local rows run through
the adapter on a tiny micro world; lm-eval's metrics equal fr_bench's scorers on the same generations; the exported
micro tasks score in lm-eval as in the sweep (same outputs, same metrics); likelihoods of single-model methods.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

lm_eval = pytest.importorskip("lm_eval")
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.api.model import LM  # noqa: E402

from fr_bench.config import ConfigError  # noqa: E402
from fr_bench.lmeval import FrBenchLM, evaluate, main, sampling_temperature  # noqa: E402
from fr_bench.lmeval_tasks import export_tasks_main  # noqa: E402
from fr_bench.offline import ensure_nltk_data  # noqa: E402
from fr_bench.tasks import get_task  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LM_EVAL_TASKS = Path(lm_eval.__file__).parent / "tasks"
SWEEP = f"""name: lmeval_test
world: {{kind: micro, micro_config: {REPO / 'experiments' / 'micro_tiny.yaml'}}}
seeds: [0]
batch_size: 8
threads: 1
methods:
  base: {{method: single_model, group: expert, options: {{model: base}}}}
  sft_only: {{method: fusionroute_sft_only, group: ablation}}
  sft_only_sampled: {{method: fusionroute_sft_only, group: ablation, options: {{temperature: 1.0}}}}
artifacts:
  router_sft: {{lr: 1.0e-3, max_steps: 3, batch_size: 8, max_length: 128}}
"""


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lmeval") / "sweep.yaml"
    path.write_text(SWEEP)
    return path


@pytest.fixture(scope="module")
def local_tasks(tmp_path_factory, shared_data) -> Path:
    """lm-eval's own gsm8k and ifeval configs (included from its install), only their data made local."""
    ensure_nltk_data()
    d = tmp_path_factory.mktemp("lm_tasks")
    gsm = shared_data / "gsm8k"
    (d / "gsm8k_local.yaml").write_text(
        f"include: {LM_EVAL_TASKS / 'gsm8k' / 'gsm8k.yaml'}\ntask: gsm8k_local\ndataset_path: json\n"
        f"dataset_name: null\ndataset_kwargs:\n  data_files:\n    train: {gsm / 'train.jsonl'}\n"
        f"    test: {gsm / 'test.jsonl'}\n")
    (d / "ifeval_local.yaml").write_text(
        f"include: {LM_EVAL_TASKS / 'ifeval' / 'ifeval.yaml'}\ntask: ifeval_local\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    train: {shared_data / 'ifeval' / 'input_data.jsonl'}\n")
    return d


def samples_of(out: Path, task: str) -> list[dict]:
    (path,) = out.rglob(f"samples_{task}_*.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def fr_results(task: str, docs: list[dict], outputs: list[str]) -> list:
    t = get_task(task)
    return t.score([{**d, "id": str(d.get("key", i))} for i, d in enumerate(docs)], outputs)


def agreement(task: str, samples: list[dict]) -> dict[str, list[int]]:
    """Per metric: [samples where lm-eval's value equals fr_bench's scorer on the same raw output, samples compared,
    samples left out]. Left out: IFEval rows whose checker draws its own arguments at random (kwargs such as the
    letter "#"), where lm-eval's unseeded result changes from run to run and fr_bench's is seeded per row."""
    if task == "gsm8k":
        names = {"strict-match": "exact_match_strict", "flexible-extract": "exact_match_flexible"}
        pairs = [(names[s["filter"]], s["exact_match"], s) for s in samples]
    else:
        pairs = [(m, s[m], s) for s in samples for m in ("prompt_level_strict_acc", "inst_level_strict_acc",
                                                         "prompt_level_loose_acc", "inst_level_loose_acc")]
    out: dict[str, list[int]] = {}
    for metric, value, s in pairs:
        (ours,) = fr_results(task, [s["doc"]], [s["resps"][0][0]])
        counts = out.setdefault(metric, [0, 0, 0])
        if any(i.get("randomized") for i in ours.details.get("instructions", [])):
            counts[2] += 1
            continue
        counts[0] += int(bool(ours.metrics[metric] == value))
        counts[1] += 1
    return out


@pytest.mark.slow
def test_lm_eval_tasks_on_local_rows_run_through_the_adapter(sweep, local_tasks, tmp_path):
    out = tmp_path / "out"
    main(["--model", "fr_bench", "--model_args", f"sweep={sweep},method=base,seed=0", "--include_path",
          str(local_tasks), "--tasks", "gsm8k_local,ifeval_local", "--limit", "4", "--batch_size", "4",
          "--gen_kwargs", "max_gen_toks=24", "--output_path", str(out), "--log_samples"])
    (results,) = out.rglob("results_*.json")
    res = json.loads(results.read_text())["results"]
    assert set(res) == {"gsm8k_local", "ifeval_local"}
    assert "exact_match,strict-match" in res["gsm8k_local"] and "inst_level_loose_acc,none" in res["ifeval_local"]
    gsm, ife = samples_of(out, "gsm8k_local"), samples_of(out, "ifeval_local")
    assert len(gsm) == 8 and len(ife) == 4  # gsm8k: one sample per filter
    assert all(s["resps"][0][0] for s in ife)  # the model's real outputs were logged
    assert gsm[0]["arguments"]["gen_args_0"]["arg_0"].count("Question:") == 6  # lm-eval's 5-shot prompt
    for task, samples in (("gsm8k", gsm), ("ifeval", ife)):
        for metric, (agree, n, _) in agreement(task, samples).items():
            assert agree == n, (task, metric, agree, n)


class ReplayLM(LM):
    """Answers each prompt with a prepared response: lm-eval's metrics on known outputs, no model."""

    def __init__(self, responses: dict[str, str]) -> None:
        super().__init__()
        self.responses = responses

    def generate_until(self, requests, disable_tqdm: bool = False):
        return [self.responses[req.args[0]] for req in requests]

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError


def gsm8k_outputs(rows: list[dict]) -> list[str]:
    """Outputs that separate the two extractions: right/wrong after '####', only as the last number, with '$' and
    thousands commas, a wrong last number after a right '####'."""
    outs = []
    for i, row in enumerate(rows):
        gold = int(row["answer"].split("#### ")[-1].replace(",", ""))
        outs.append([f"Step by step.\n#### {gold}", f"The answer is {gold}.", f"#### {gold + 1}",
                     f"#### {gold}\nso {gold + 7} in all", f"That costs ${gold:,}", "no number here"][i % 6])
    return outs


def test_lm_eval_metrics_equal_fr_bench_scorers_on_the_same_generations(local_tasks, shared_data, capsys):
    from lm_eval.tasks import TaskManager

    n_gsm = n_if = 60  # lm-eval's `limit` applies to every task
    gsm_rows = [json.loads(x) for x in (shared_data / "gsm8k" / "test.jsonl").read_text().splitlines()[:n_gsm]]
    if_rows = [json.loads(x) for x in (shared_data / "ifeval" / "input_data.jsonl").read_text().splitlines()[:n_if]]
    gpt4 = {r["prompt"]: r["response"] for r in map(json.loads, (
        shared_data / "ifeval" / "reference" / "input_response_data_gpt4_20231107_145030.jsonl").read_text()
        .splitlines())}
    responses = {f"Question: {r['question']}\nAnswer:": o for r, o in zip(gsm_rows, gsm8k_outputs(gsm_rows))}
    responses.update({r["prompt"]: gpt4[r["prompt"]] for r in if_rows})
    res = lm_eval.simple_evaluate(model=ReplayLM(responses), tasks=["gsm8k_local", "ifeval_local"],
                                  task_manager=TaskManager(include_path=str(local_tasks)), num_fewshot=0,
                                  limit=n_gsm, log_samples=True)
    gsm, ife = res["samples"]["gsm8k_local"], res["samples"]["ifeval_local"]
    counts = {"gsm8k": agreement("gsm8k", gsm), "ifeval": agreement("ifeval", ife)}
    with capsys.disabled():
        print(f"\nlm-eval vs fr_bench agreement (same outputs): {json.dumps(counts)}")
    for task, per_metric in counts.items():
        for metric, (agree, n, left_out) in per_metric.items():
            assert agree == n and n >= (57 if task == "ifeval" else 60), (task, metric, agree, n, left_out)
    # the outputs are informative: both extractions right and wrong somewhere, IFEval prompts pass and fail
    for filt in ("strict-match", "flexible-extract"):
        assert {s["exact_match"] for s in gsm if s["filter"] == filt} == {0.0, 1.0}, filt
    assert {float(s["prompt_level_strict_acc"]) for s in ife} == {0.0, 1.0}


@pytest.mark.slow
def test_exported_micro_tasks_score_in_lm_eval_as_in_the_sweep(sweep, tmp_path, monkeypatch):
    """Sampled decoding (temperature 1, run seed) on both sides: equal outputs are a sharp check of prompts, chat
    template, batching, stop strings and generation length; equal metrics of the scorers."""
    from fr_bench.sweep.__main__ import main as sweep_main

    monkeypatch.chdir(REPO)
    report = tmp_path / "report"
    assert sweep_main([str(sweep), "--only", "sft_only_sampled", "--no-report", "--out", str(report)]) == 0
    assert export_tasks_main([str(tmp_path / "tasks"), "--sweep", str(sweep)]) == 0
    names = sorted(p.stem for p in (tmp_path / "tasks").glob("*.yaml"))
    assert names == ["micro_code", "micro_general", "micro_if", "micro_math", "micro_mixed"]
    res = evaluate(sweep, "sft_only_sampled", names, include_path=tmp_path / "tasks", apply_chat_template=True,
                   batch_size=8, gen_kwargs="do_sample=true,temperature=1.0", confirm_run_unsafe_code=True,
                   log_samples=True)
    rows = {r["task"]: r for r in map(json.loads, (report / "results.jsonl").read_text().splitlines())
            if r["method"] == "sft_only_sampled"}
    produced = 0
    for name in names:
        theirs = {k.removesuffix(",none"): v for k, v in res["results"][name].items() if k.endswith(",none")
                  and "stderr" not in k}
        assert rows[name]["primary_metric"] in theirs
        for metric, value in theirs.items():
            assert value == pytest.approx(rows[name]["metrics"][metric]), (name, metric)
        ours = [json.loads(x) for x in (report / "samples" / "sft_only_sampled" / name / "seed0.jsonl")
                .read_text().splitlines()]
        outs = [s["resps"][0][0] for s in sorted(res["samples"][name], key=lambda s: s["doc_id"])]
        assert outs == [s["output"] for s in ours], name
        produced += sum(bool(o.strip()) for o in outs)
    assert produced > 0  # sampled text, not empty strings compared with empty strings


def test_gen_kwargs_map_to_the_engine():
    assert sampling_temperature({"until": ["x"], "do_sample": False, "temperature": 0.0}) == 0.0
    assert sampling_temperature({"do_sample": True}) == 1.0
    assert sampling_temperature({"temperature": 0.7}) == 0.7
    assert sampling_temperature({"do_sample": True, "temperature": 0.5, "top_p": 1.0}) == 0.5
    with pytest.raises(ValueError, match="top_p=0.9"):
        sampling_temperature({"top_p": 0.9})


@pytest.mark.slow
def test_likelihoods_generation_limits_and_errors(sweep, monkeypatch):
    monkeypatch.chdir(REPO)
    lm = FrBenchLM(sweep=str(sweep), method="base", seed=0, batch_size=2)
    model = lm.scoring_model()
    tok = lm.tokenizer
    ctx, conts = "Ana has 9 cups.", [" She makes 5 more.", " 14", "####"]

    def direct(c: str) -> float:
        """lm-eval's split: the context's own tokens, then the whole text's tokens past that many."""
        ctx_ids = tok(ctx, add_special_tokens=False)["input_ids"]
        ids = ctx_ids + tok(ctx + c, add_special_tokens=False)["input_ids"][len(ctx_ids):]
        n = len(ids) - len(ctx_ids)
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1].float(), -1)
        return float(logp[-n:].gather(1, torch.tensor(ids[-n:])[:, None]).sum())

    reqs = [Instance("loglikelihood", {}, (ctx, c), i) for i, c in enumerate(conts)]
    got = lm.loglikelihood(reqs)
    for (ll, _), c in zip(got, conts):
        assert ll == pytest.approx(direct(c), abs=1e-4)
    # the tokens the model decodes greedily are greedy, one token changed is not
    ctx_ids = tok(ctx, add_special_tokens=False)["input_ids"]
    (gen,) = lm.method.generate([ctx], max_new_tokens=4, stop=[])
    flipped = [(gen.token_ids[0] + 1) % len(tok), *gen.token_ids[1:]]
    assert [g for _, g in lm._loglikelihood_tokens([(None, ctx_ids, gen.token_ids), (None, ctx_ids, flipped)])] \
        == [True, False]
    # rolling: the whole text after the prefix token
    (rolled,) = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (ctx,), 0)])
    ids = [lm.prefix_token_id] + ctx_ids
    assert rolled == pytest.approx(lm._loglikelihood_tokens([(None, ids[:1], ids[1:])])[0][0], abs=1e-4)
    # sampling (seeded by the run seed): max_gen_toks bounds the output, until cuts it before the stop string
    sample = {"do_sample": True, "until": []}
    short, long = lm.generate_until([Instance("generate_until", {}, (ctx, {**sample, "max_gen_toks": n}), 0)
                                     for n in (4, 16)])
    assert long.startswith(short) and len(long) > len(short)
    stop = long.split()[1] if len(long.split()) > 1 else long.strip()[-1]
    (cut,) = lm.generate_until([Instance("generate_until", {}, (ctx, {**sample, "max_gen_toks": 16,
                                                                      "until": [stop]}), 0)])
    assert cut == long[:long.index(stop)]
    # multi-model methods refuse likelihoods by name; a method the sweep lacks is named with the ones it has
    routed = FrBenchLM(sweep=str(sweep), method="sft_only")
    with pytest.raises(NotImplementedError, match="single-model methods"):
        routed.loglikelihood(reqs)
    with pytest.raises(ConfigError, match="base, sft_only"):
        FrBenchLM(sweep=str(sweep), method="nope")
