"""Reward model: the Bradley–Terry loss by hand, and a real tiny fit that learns a separable preference."""
from __future__ import annotations

import json
import math
import random

import pytest
import torch

from baselines.reward_model import (RewardModel, RewardModelConfig, bradley_terry_loss, last_token_rewards,
                                    pairwise_accuracy, read_pairs, train_reward_model)
from fr_bench.config import ConfigError
from fr_bench.world import World


def test_bradley_terry_loss_by_hand() -> None:
    loss = bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 0.0]))
    want = (-math.log(1 / (1 + math.exp(-1.0))) + math.log(2.0)) / 2
    assert loss.item() == pytest.approx(want, rel=1e-6)


def _pairs(n: int, seed: int) -> list[dict[str, str]]:
    """Chosen answers hold 'good', rejected ones 'bad', at a random place among random words (so the last token,
    where the reward is read, says nothing by itself and an untrained model is at chance)."""
    rng = random.Random(seed)
    words = "a b c d e f g h i j k l m n o p".split()

    def answer(marker: str) -> str:
        body = rng.choices(words, k=rng.randint(2, 5))
        body.insert(rng.randrange(len(body)), marker)
        return " ".join(body)

    return [{"prompt": "question " + " ".join(rng.choices(words, k=rng.randint(2, 6))),
             "chosen": answer("good"), "rejected": answer("bad")} for _ in range(n)]


@pytest.fixture()
def tiny_world(tmp_path) -> World:
    from baseline_fixtures import make_lm, make_tokenizer

    tok = make_tokenizer(tmp_path / "tok")
    make_lm(tmp_path / "base", tok, seed=0)
    return World(tokenizer=str(tmp_path / "tok"), base=str(tmp_path / "base"), experts={},
                 router_init=str(tmp_path / "base"), sft_data={})


def test_rewards_are_read_at_the_last_real_token_under_right_padding(tiny_world) -> None:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_world.base, num_labels=1).eval()
    ids = torch.tensor([[5, 6, 7, 0, 0], [5, 6, 7, 8, 9]])
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    batched = last_token_rewards(model, ids, mask)
    alone = last_token_rewards(model, ids[:1, :3], mask[:1, :3])
    torch.testing.assert_close(batched[0], alone[0])


def test_a_tiny_fit_learns_a_separable_preference(tiny_world, tmp_path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in _pairs(64, seed=1)))
    held_out = _pairs(32, seed=2)
    cfg = RewardModelConfig(lr=3e-3, epochs=6, batch_size=8, val_fraction=0.25, log_every_n_steps=1)

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    untrained = RewardModel(AutoModelForSequenceClassification.from_pretrained(tiny_world.base, num_labels=1),
                            AutoTokenizer.from_pretrained(tiny_world.tokenizer))
    before = pairwise_accuracy(untrained, held_out)

    metrics = train_reward_model(tiny_world, pairs, cfg, tmp_path / "rm", seed=0)
    rm = RewardModel.from_pretrained(tmp_path / "rm")
    after = pairwise_accuracy(rm, held_out)
    assert before < 0.8, before
    assert after >= 0.95 and metrics["val_accuracy"] >= 0.9, (before, after, metrics)
    assert metrics["train_pairs"] == 48 and metrics["val_pairs"] == 16
    assert (tmp_path / "rm" / "logs" / "version_0" / "metrics.csv").is_file()
    # score() of a whole batch equals one-at-a-time scores (padding does not leak into the reward)
    prompts, responses = ["question a b", "question c"], ["d e good", "bad"]
    both = rm.score(prompts, responses)
    assert both == pytest.approx([rm.score([p], [r])[0] for p, r in zip(prompts, responses)], abs=1e-5)


def test_bad_pairs_file_and_config_are_named(tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "x", "chosen": "y"}) + "\n")
    with pytest.raises(KeyError, match="rejected"):
        read_pairs(bad)
    with pytest.raises(ConfigError, match="val_fraction"):
        RewardModelConfig(val_fraction=1.0).validate()


# --- a pretrained reward model from a path ------------------------------------------------------------------------

def _by_hand(backbone: torch.nn.Module, head: torch.nn.Linear, tok, prompt: str, response: str) -> float:
    """The reward recomputed from scratch: backbone over prompt + response, head at the last token."""
    ids = tok(prompt + " " + response, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return head(backbone(input_ids=ids).last_hidden_state[0, -1]).item()


def test_a_pretrained_sequence_classifier_from_a_path(tiny_world, tmp_path) -> None:
    """`path` + the artifact builder: no pairs needed, the folder is read in place and scores like the model."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from fr_bench.artifacts import get_artifact

    torch.manual_seed(3)
    clf = AutoModelForSequenceClassification.from_pretrained(tiny_world.base, num_labels=1).eval()
    clf.save_pretrained(tmp_path / "public_rm")
    AutoTokenizer.from_pretrained(tiny_world.tokenizer).save_pretrained(tmp_path / "public_rm")
    cfg = RewardModelConfig(path=str(tmp_path / "public_rm"))
    assert get_artifact("reward_model").deps_for(cfg) == ()                       # no preference pairs built
    assert get_artifact("reward_model").deps_for(RewardModelConfig()) == ("pref_pairs",)
    (tmp_path / "art").mkdir()
    get_artifact("reward_model").build(tiny_world, cfg, {}, tmp_path / "art", 0)
    meta = json.loads((tmp_path / "art" / "reward_model.json").read_text())
    assert meta["head"] == "sequence_classification" and not (tmp_path / "art" / "config.json").exists()
    rm = RewardModel.from_pretrained(tmp_path / "art")
    got = rm.score(["a b"], ["c d"])[0]
    assert got == pytest.approx(_by_hand(clf.base_model, clf.score, rm.tokenizer, "a b", "c d"), abs=1e-5)


def test_a_causal_lm_with_a_value_head_from_a_path(tiny_world, tmp_path) -> None:
    """A TRL-style checkpoint (the LM's weights plus v_head.summary.*) is found by `head: auto` and scores with the
    value head at the last token."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from baselines.reward_model import use_pretrained_reward_model

    lm = AutoModelForCausalLM.from_pretrained(tiny_world.base).eval()
    torch.manual_seed(4)
    head = torch.nn.Linear(lm.config.hidden_size, 1)
    state = {k: v.contiguous() for k, v in lm.state_dict().items()}
    state |= {"v_head.summary.weight": head.weight.detach().clone(), "v_head.summary.bias": head.bias.detach().clone()}
    folder = tmp_path / "vh_rm"
    lm.save_pretrained(folder)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    AutoTokenizer.from_pretrained(tiny_world.tokenizer).save_pretrained(folder)
    (tmp_path / "art").mkdir()
    assert use_pretrained_reward_model(RewardModelConfig(path=str(folder)), tmp_path / "art")["head"] == "value_head"
    rm = RewardModel.from_pretrained(tmp_path / "art")
    scores = rm.score(["a b", "e"], ["c d", "f g h"])
    want = [_by_hand(lm.base_model, head, rm.tokenizer, p, r) for p, r in (("a b", "c d"), ("e", "f g h"))]
    assert scores == pytest.approx(want, abs=1e-5)


def test_a_path_that_is_no_reward_model_is_named(tiny_world, tmp_path) -> None:
    from baselines.reward_model import use_pretrained_reward_model

    with pytest.raises(ConfigError, match="RewardModelConfig.path.*no config.json"):
        RewardModelConfig(path=str(tmp_path / "missing")).validate()
    with pytest.raises(ValueError, match="neither a sequence classifier"):             # a plain LM: no head at all
        use_pretrained_reward_model(RewardModelConfig(path=tiny_world.base), tmp_path)
