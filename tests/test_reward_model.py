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
