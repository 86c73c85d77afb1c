"""Token-level methods through the registry on a tiny saved world, and the confidence router's choice rule."""
from __future__ import annotations

import pytest
import torch
from tiny_lms import one_thread, prompts_of_lengths, save_tiny_world, tiny_lm, tiny_tokenizer

from fr_bench.decoding.engine import DecodeEngine
from fr_bench.decoding.policies import Confidence, FusionRoute, SingleModel
from fr_bench.methods import get_method_class
from fr_bench.models.router import RouterModel

NEW = 12


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return save_tiny_world(tmp_path_factory.mktemp("world"))


def text_prompts(n: int) -> list[str]:
    tok = tiny_tokenizer()
    return [tok.decode(p) for p in prompts_of_lengths((3, 6, 2, 5)[:n], seed=9)]


def sharpened(seed: int, scale: float) -> torch.nn.Module:
    model = tiny_lm("llama", seed)
    with torch.no_grad():
        model.lm_head.weight.mul_(scale)
    return model


@pytest.mark.parametrize("criterion", ["max_prob", "entropy"])
@pytest.mark.parametrize("confident", [0, 2])
def test_confidence_picks_the_sharp_expert(criterion, confident):
    """One expert's logits are scaled up 20x (near one-hot), the others down 20x (near uniform)."""
    experts = [sharpened(s, 20.0 if i == confident else 0.05) for i, s in enumerate((1, 2, 3))]
    tok = tiny_tokenizer()
    prompts = prompts_of_lengths((3, 6, 2), seed=7)
    got, _ = DecodeEngine(experts, Confidence([0, 1, 2], criterion), tok, eos_ids=set()).generate_ids(prompts, NEW)
    alone, _ = DecodeEngine([experts[confident]], SingleModel(), tok, eos_ids=set()).generate_ids(prompts, NEW)
    for g, a in zip(got, alone):
        assert g.expert_choices == [confident] * NEW and g.token_ids == a.token_ids


def test_fusionroute_method_matches_the_engine(world):
    world, router_dir = world
    method = get_method_class("fusionroute")(world, {"batch_size": 3})
    assert method.requires() == ["router_cdpo"]
    method.load({"router_cdpo": router_dir})
    out = method.generate(text_prompts(4), NEW, stop=[])
    router = RouterModel.from_pretrained(router_dir)
    experts = [m.model for m in method.engine.models[1:]]
    tok = tiny_tokenizer()
    ref, _ = DecodeEngine([router, *experts], FusionRoute(0, [1, 2, 3]), tok).generate(text_prompts(4), NEW)
    assert [o.token_ids for o in out] == [r.token_ids for r in ref]
    assert [o.text for o in out] == [r.text for r in ref]
    assert all(len(o.expert_choices) == len(o.token_ids) and o.cost_tokens > 0 for o in out)
    assert any(len(set(o.expert_choices)) > 1 for o in out)


def test_fusionroute_ablations_need_their_router(world):
    world, router_dir = world
    sft = get_method_class("fusionroute_sft_only")(world)
    assert sft.requires() == ["router_sft"] and sft.cfg.complement
    no_comp = get_method_class("fusionroute_no_complement")(world)
    assert no_comp.requires() == ["router_cdpo"] and not no_comp.cfg.complement
    no_comp.load({"router_cdpo": router_dir})
    full = get_method_class("fusionroute")(world)
    full.load({"router_cdpo": router_dir})
    prompts = text_prompts(3)
    a, b = no_comp.generate(prompts, NEW, []), full.generate(prompts, NEW, [])
    assert [x.token_ids for x in a] != [x.token_ids for x in b]
    with pytest.raises(KeyError, match="router_cdpo"):
        get_method_class("fusionroute")(world).load({"router_sft": router_dir})


def test_router_for_other_experts_is_refused(world, tmp_path):
    world, router_dir = world
    other = RouterModel.from_pretrained(router_dir)
    other.expert_names = ["code", "math", "chat"]
    other.save_pretrained(tmp_path / "router")
    with pytest.raises(ValueError, match=r"trained for experts \['code', 'math', 'chat'\]"):
        get_method_class("fusionroute")(world).load({"router_cdpo": tmp_path / "router"})


def test_single_model_and_confidence_methods(world):
    world, _ = world
    prompts = text_prompts(3)
    expert = get_method_class("single_model")(world, {"model": "code"})
    expert.load({})
    base = get_method_class("single_model")(world, {"model": "base"})
    base.load({})
    a, b = expert.generate(prompts, NEW, []), base.generate(prompts, NEW, [])
    assert [x.token_ids for x in a] != [x.token_ids for x in b] and a[0].expert_choices is None
    conf = get_method_class("token_confidence")(world, {"criterion": "entropy"})
    conf.load({})
    c = conf.generate(prompts, NEW, [])
    assert all(set(x.expert_choices) <= {0, 1, 2} for x in c)
    with pytest.raises(ValueError, match="model='vision'"):
        get_method_class("single_model")(world, {"model": "vision"}).load({})
    with pytest.raises(ValueError, match="criterion 'perplexity'"):               # refused before any loading
        get_method_class("token_confidence")(world, {"criterion": "perplexity"})
    with pytest.raises(ValueError, match="key 'combyne' is not a known setting"):
        get_method_class("fusionroute")(world, {"combyne": True})
