"""The expert pool loads frozen models and refuses, before reading weights, any model with another vocabulary."""
from __future__ import annotations

import pytest
import torch
from tiny_lms import WORDS, save_lm, tiny_lm, tiny_tokenizer

from fr_bench.models.expert_pool import ExpertPool
from fr_bench.models.loading import VocabularyMismatchError


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("pool")
    tok = tiny_tokenizer()
    return {
        "tokenizer": save_lm(tiny_lm("llama", 0), tok, root / "ref"),
        "math": save_lm(tiny_lm("llama", 1), tok, root / "math"),
        "code": save_lm(tiny_lm("llama", 2), tok, root / "code"),
        # same vocabulary size, one word replaced: ids mean different tokens
        "renamed": save_lm(tiny_lm("llama", 3), tiny_tokenizer(WORDS[:-1] + ["zz"]), root / "renamed"),
        # the tokenizer matches but the logit width does not
        "wide": save_lm(tiny_lm("llama", 4, vocab=80), tok, root / "wide"),
        "no_tokenizer": save_lm(tiny_lm("llama", 5), None, root / "no_tokenizer"),
    }


def test_loads_frozen_experts_in_dtype(folders):
    pool = ExpertPool.load({"math": folders["math"], "code": folders["code"], "plain": folders["no_tokenizer"]},
                           folders["tokenizer"], dtype="bfloat16")
    assert pool.names == ["math", "code", "plain"] and pool.vocab_size == 64
    for model in pool.models:
        assert not model.training
        assert all(not p.requires_grad and p.dtype == torch.bfloat16 for p in model.parameters())
    assert pool["code"] is pool.models[1]


def test_refuses_other_vocabulary(folders):
    with pytest.raises(VocabularyMismatchError) as err:
        ExpertPool.load({"math": folders["math"], "renamed": folders["renamed"]}, folders["tokenizer"])
    msg = str(err.value)
    assert "expert 'renamed'" in msg and "'zz'" in msg and "'w59'" in msg and "Fix:" in msg


def test_refuses_other_logit_width(folders):
    with pytest.raises(VocabularyMismatchError) as err:
        ExpertPool.load({"math": folders["math"], "wide": folders["wide"]}, folders["tokenizer"])
    assert "expert 'wide'" in str(err.value) and "80 vs 64" in str(err.value)


def test_missing_checkpoint_is_named(folders, tmp_path):
    missing = str(tmp_path / "nowhere" / "math")
    with pytest.raises(FileNotFoundError, match="expert 'math'.*nowhere/math"):
        ExpertPool.load({"math": missing}, folders["tokenizer"])
    with pytest.raises(FileNotFoundError, match="expert 'x'.*not-a-model"):
        ExpertPool.load({"x": "not-a-model"}, folders["tokenizer"])      # not a folder and not an org/name
    with pytest.raises(FileNotFoundError, match="expert 'y'.*Hugging Face cache"):
        ExpertPool.load({"y": "fr-bench-test/not-cached"}, folders["tokenizer"])   # a Hub name, offline
