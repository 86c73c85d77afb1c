"""Sequence-level collaboration: public-check extraction on real benchmark rows, the selection rule, the prompt
router on a separable toy world, and both methods end to end through the decode engine on tiny trained experts."""
from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest
import torch

from baselines.prompt_router import PromptRouterConfig, fit_classifier, mean_response_logprobs, train_prompt_router
from baselines.sequence_level import choose, public_checks, verifier_scores
from fr_bench.methods import get_method_class
from fr_bench.world import World

MATH_WORDS, PET_WORDS = "add sum 1 2 3 4 + =".split(), "cat dog red blue".split()


# --- public checks and the verifier ------------------------------------------------------------------------------

def _mbpp_row(shared_data: Path, task_id: int = 11) -> dict:
    rows = json.loads((shared_data / "mbpp" / "sanitized-mbpp.json").read_text())
    return next(r for r in rows if r["task_id"] == task_id)


def _humaneval_row(shared_data: Path, index: int = 0) -> dict:
    with gzip.open(shared_data / "humaneval" / "HumanEval.jsonl.gz", "rt") as fh:
        return [json.loads(line) for line in fh][index]


def test_public_checks_are_exactly_the_tests_the_prompt_shows(shared_data) -> None:
    mbpp = _mbpp_row(shared_data)
    prompt = f"{mbpp['prompt']}\nYour code should pass these tests:\n\n" + "\n".join(mbpp["test_list"])
    assert public_checks(prompt) == mbpp["test_list"]
    he = _humaneval_row(shared_data)
    checks = public_checks(he["prompt"])
    assert len(checks) == 2 and all("has_close_elements" in c for c in checks)
    assert not any("candidate" in c for c in checks)          # the hidden `check(candidate)` tests are never read
    assert public_checks("What is 2 + 3? Answer with a number.") == []


def test_verifier_scores_real_solutions_above_broken_ones(shared_data) -> None:
    mbpp = _mbpp_row(shared_data)
    prompt = f"{mbpp['prompt']}\nYour code should pass these tests:\n\n" + "\n".join(mbpp["test_list"])
    he = _humaneval_row(shared_data)
    good_mbpp = f"Here you go:\n```python\n{mbpp['code']}\n```\nDone."
    half_mbpp = "```python\ndef remove_Occ(s, ch):\n    return s.strip(ch)\n```"   # passes 2 of 3
    good_he = "```python\n" + he["prompt"] + he["canonical_solution"] + "```"
    bad_he = "```python\n" + he["prompt"] + "    return True\n```"                       # passes 1 of 2
    scores = verifier_scores([prompt, prompt, he["prompt"], he["prompt"], "no tests here"],
                             [good_mbpp, half_mbpp, good_he, bad_he, "x = 1"], timeout_s=10)
    assert scores == [1.0, pytest.approx(2 / 3), 1.0, 0.5, None]


def test_choose_uses_primary_then_secondary_then_lowest_index() -> None:
    # scores are [expert][prompt]
    assert choose([[0.1, 0.9, 0.5], [0.2, 0.3, 0.5]]) == [1, 0, 0]
    primary = [[1.0, None, 0.5], [1.0, None, 0.5], [0.0, None, 1.0]]
    secondary = [[-2.0, -1.0, 9.0], [-1.0, -3.0, 9.0], [5.0, -2.0, 0.0]]
    assert choose(primary, secondary) == [1, 0, 2]


# --- scoring primitives and the classifier ---------------------------------------------------------------------------

def test_mean_response_logprobs_matches_a_direct_computation(tmp_path) -> None:
    from baseline_fixtures import make_lm, make_tokenizer

    tok = make_tokenizer(tmp_path / "tok")
    model = make_lm(tmp_path / "m", tok, seed=3)
    prompts, responses = [[5, 6, 7], [8]], [[9, 10], [11, 12, 13]]
    got = mean_response_logprobs(model, prompts, responses, pad_id=0, batch_size=2)
    for p, r, g in zip(prompts, responses, got):
        with torch.no_grad():
            logp = model(input_ids=torch.tensor([p + r])).logits[0].log_softmax(-1)
        want = sum(logp[len(p) - 1 + t, r[t]].item() for t in range(len(r))) / len(r)
        assert g == pytest.approx(want, abs=1e-5)
    assert mean_response_logprobs(model, [[5]], [[]], pad_id=0) == [float("-inf")]


def test_classifier_learns_separable_blobs() -> None:
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 8, generator=g) * 4
    labels = torch.arange(3).repeat(40)
    feats = centers[labels] + torch.randn(120, 8, generator=g)
    clf = fit_classifier(feats, labels, 3, lr=1e-2, weight_decay=1e-3, steps=300)
    assert (clf(feats).argmax(-1) == labels).float().mean() == 1.0


# --- a tiny world with two experts that answer differently ----------------------------------------------------------

def _prompts(words: list[str], n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["question " + " ".join(rng.choices(words, k=rng.randint(2, 5))) for _ in range(n)]


@pytest.fixture(scope="module")
def toy_world(tmp_path_factory) -> World:
    """Expert 'good' answers everything with 'good good good', expert 'bad' with 'bad bad bad'. SFT data: math-word
    prompts want 'good good good', pet-word prompts want 'bad bad bad' (so the best expert depends on the prompt)."""
    from baseline_fixtures import make_lm, make_tokenizer, train_to_say

    root = tmp_path_factory.mktemp("toy_world")
    tok = make_tokenizer(root / "tok")
    make_lm(root / "base", tok, seed=0)
    train_prompts = _prompts(MATH_WORDS + PET_WORDS, 24, seed=0)
    train_to_say(root / "good", tok, train_prompts, "good good good", seed=1)
    train_to_say(root / "bad", tok, train_prompts, "bad bad bad", seed=2)
    sft = {}
    for domain, words, answer in (("math", MATH_WORDS, "good good good"), ("pets", PET_WORDS, "bad bad bad")):
        sft[domain] = str(root / f"{domain}.jsonl")
        Path(sft[domain]).write_text("".join(json.dumps({"prompt": p, "response": answer}) + "\n"
                                             for p in _prompts(words, 30, seed=len(domain))))
    return World(tokenizer=str(root / "tok"), base=str(root / "base"),
                 experts={"good": str(root / "good"), "bad": str(root / "bad")}, router_init=str(root / "base"),
                 sft_data=sft)


def _method(name: str, world: World, artifacts: dict[str, Path] | None = None, **options):
    method = get_method_class(name)(world, {"batch_size": 4, **options}, seed=0)
    method.load(artifacts or {})
    return method


@pytest.mark.slow
def test_prompt_router_learns_the_toy_split_and_routes_whole_answers(toy_world, tmp_path) -> None:
    cfg = PromptRouterConfig(steps=200, val_fraction=0.25, batch_size=16)
    metrics = train_prompt_router(toy_world, cfg, tmp_path / "pr", seed=0)
    assert metrics["label_counts"] == {"good": 30, "bad": 30}       # the label rule found each domain's expert
    assert metrics["val_accuracy"] == 1.0 and metrics["val_rows"] == 15
    labels = [json.loads(line) for line in (tmp_path / "pr" / "labels.jsonl").read_text().splitlines()]
    assert {r["domain"]: r["label"] for r in labels} == {"math": "good", "pets": "bad"}

    method = _method("seq_prompt_router", toy_world, {"prompt_router": tmp_path / "pr"})
    prompts = _prompts(MATH_WORDS, 3, seed=7) + _prompts(PET_WORDS, 3, seed=8)
    gens = method.generate(prompts, max_new_tokens=6, stop=[])
    assert [g.text for g in gens] == ["good good good"] * 3 + ["bad bad bad"] * 3
    assert [set(g.expert_choices) for g in gens] == [{0}] * 3 + [{1}] * 3
    for p, g in zip(prompts, gens):   # encoder pass over the prompt + the chosen expert's prompt and 3 tokens (+eos)
        n = len(method.router.encode([p])[0])
        assert g.cost_tokens == n + n + len(g.token_ids) - 1


@pytest.mark.slow
def test_seq_select_base_logprob_picks_the_answer_the_base_prefers(toy_world) -> None:
    prompts = _prompts(MATH_WORDS + PET_WORDS, 4, seed=9)
    for base, want in (("good", "good good good"), ("bad", "bad bad bad")):
        world = World(**{**toy_world.__dict__, "base": toy_world.experts[base]})
        method = _method("seq_select", world, selector="base_logprob")
        gens = method.generate(prompts, max_new_tokens=6, stop=[])
        assert [g.text for g in gens] == [want] * len(prompts)
        single = [method._decode(e, prompts, 6, []) for e in range(2)]
        for i, g in enumerate(gens):   # both experts' decode cost + the base scoring both answers
            n_prompt = len(method._tok(prompts[i], add_special_tokens=False)["input_ids"])
            assert g.cost_tokens == sum(s[i].cost_tokens for s in single) + 2 * (n_prompt + 3)


def _constructed_reward_model(world: World, folder: Path, favourite: str) -> None:
    """A sequence classifier whose reward is the alignment of the last token's embedding with `favourite`'s:
    attention and MLP outputs are zeroed, so the last hidden state is the normed embedding of the last token."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(world.tokenizer)
    model = AutoModelForSequenceClassification.from_pretrained(world.base, num_labels=1)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        fav = model.model.norm(model.model.embed_tokens.weight[tok.convert_tokens_to_ids(favourite)])
        model.score.weight.copy_(fav.unsqueeze(0))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    (folder / "reward_model.json").write_text(json.dumps({"max_length": 64}))


@pytest.mark.slow
@pytest.mark.parametrize("favourite", ["good", "bad"])
def test_seq_select_reward_model_keeps_the_answer_the_reward_model_prefers(toy_world, tmp_path, favourite) -> None:
    _constructed_reward_model(toy_world, tmp_path / "rm", favourite)
    method = _method("seq_select", toy_world, {"reward_model": tmp_path / "rm"}, selector="reward_model")
    prompts = _prompts(MATH_WORDS + PET_WORDS, 4, seed=10)
    gens = method.generate(prompts, max_new_tokens=6, stop=[])
    want = 0 if favourite == "good" else 1
    assert [g.text for g in gens] == [f"{favourite} {favourite} {favourite}"] * 4
    assert all(set(g.expert_choices) == {want} for g in gens)
