"""Collab through the engine == a brute-force reference that recomputes every prefix, rollout and reward with plain
HF forwards (no cache), token for token and choice for choice, on tiny random models; and the method end to end."""
from __future__ import annotations

import json

import pytest
import torch
from transformers import Gemma2Config, Gemma2ForSequenceClassification, LlamaConfig, LlamaForSequenceClassification

from tiny_lms import one_thread, prompts_of_lengths, save_tiny_world, tiny_lm, tiny_tokenizer

from fr_bench.decoding.collab import Collab, RewardHeadLM
from fr_bench.decoding.engine import DecodeEngine
from fr_bench.models.loading import freeze

EOS = {2}


def tiny_reward_model(family: str, seed: int) -> torch.nn.Module:
    """A random one-output sequence classifier with the tiny LMs' shape (same vocabulary)."""
    lm = tiny_lm(family, seed)
    torch.manual_seed(seed)
    cls, cfg = ((LlamaForSequenceClassification, LlamaConfig) if family == "llama"
                else (Gemma2ForSequenceClassification, Gemma2Config))
    fields = {k: v for k, v in lm.config.to_dict().items() if k not in ("id2label", "label2id")}
    return freeze(cls(cfg(**fields, num_labels=1)))


def _reward(rm: torch.nn.Module, ids: list[int]) -> float:
    hidden = rm.base_model(input_ids=torch.tensor([ids])).last_hidden_state
    return rm.score(hidden[0, -1]).item()


@torch.inference_mode()
def reference(prompt: list[int], experts: list, rm, k: int, steps: int, budget: int, max_new: int):
    """Collab from scratch: full forwards of every prefix; the same budget and cheap rule as the policy."""
    gen: list[int] = []
    choices: list[int] = []
    spent, winner, n = 0, None, len(experts)
    for _ in range(max_new):
        logits = torch.stack([m(input_ids=torch.tensor([prompt + gen])).logits[0, -1].float() for m in experts])
        cand = logits.topk(k).indices
        cheap = int(logits.log_softmax(-1).amax(-1).argmax()) if winner is None else winner
        if len(set(cand.flatten().tolist())) > 1 and (budget < 0 or spent + n * k * steps <= budget):
            best, arg = None, None
            for e in range(n):
                for j in range(k):
                    seq = [int(cand[e, j])]
                    for _ in range(steps):
                        out = experts[e](input_ids=torch.tensor([prompt + gen + seq])).logits[0, -1]
                        seq.append(int(out.argmax()))
                    end = next((i for i, t in enumerate(seq) if t in EOS), steps) + 1
                    score = _reward(rm, prompt + gen + seq[:end])
                    if best is None or score > best:
                        best, arg = score, (e, j)
            winner, spent = arg[0], spent + n * k * steps
            token, choice = int(cand[arg]), arg[0]
        else:
            token, choice = int(logits[cheap].argmax()), cheap
        gen.append(token)
        choices.append(choice)
        if token in EOS:
            break
    return gen, choices


@pytest.mark.parametrize("family", ["llama", "gemma2"])
@pytest.mark.parametrize("k, steps, budget", [(2, 3, -1), (1, 2, 12)])   # (1, 2, 12): 2 look-ahead steps, then cheap
def test_collab_equals_brute_force(family: str, k: int, steps: int, budget: int) -> None:
    with one_thread():
        experts = [tiny_lm(family, 10 + i) for i in range(3)]
        rm = tiny_reward_model(family, 40)
        prompts = prompts_of_lengths((3, 5, 8), seed=11)
        policy = Collab(experts=[0, 1, 2], reward=3, eos_ids=EOS, top_k=k, rollout_tokens=steps, budget=budget)
        engine = DecodeEngine([*experts, RewardHeadLM(rm)], policy, tiny_tokenizer(), eos_ids=EOS)
        batched, _ = engine.generate_ids(prompts, max_new_tokens=7, batch_size=3)   # left-padded batch
        alone = [engine.generate_ids([p], max_new_tokens=7, batch_size=1)[0][0] for p in prompts]
        for p, b, a in zip(prompts, batched, alone):
            want = reference(p, experts, rm, k, steps, budget, 7)
            assert (b.token_ids, b.expert_choices) == want
            assert (a.token_ids, a.expert_choices) == want
        assert len({c for b in batched for c in b.expert_choices}) > 1     # the experts take turns


def test_budget_and_cost_accounting() -> None:
    """A look-ahead step adds its rollout and reward positions to the row's cost; the budget stops look-ahead."""
    with one_thread():
        experts = [tiny_lm("llama", 10 + i) for i in range(3)]
        rm = tiny_reward_model("llama", 40)
        prompt = prompts_of_lengths((5,), seed=11)

        def decode(budget: int):
            policy = Collab(experts=[0, 1, 2], reward=3, eos_ids=EOS, top_k=2, rollout_tokens=3, budget=budget)
            return DecodeEngine([*experts, RewardHeadLM(rm)], policy, tiny_tokenizer(), eos_ids=EOS).generate_ids(
                prompt, max_new_tokens=6)[0][0]

        none, one = decode(0), decode(18)        # one look-ahead step costs 3 experts x 2 x 3 = 18 rollout tokens
        per_step = 18 + 3 * 2 * 4                # rollouts + reward positions (candidate + 3 rollout tokens each)
        # no look-ahead: every expert runs the prompt (5) and 5 more tokens. One look-ahead step (the first): the
        # experts' and the reward model's prompt, the step's work, then only the winner for the 5 later tokens.
        assert none.cost_tokens == 3 * (5 + 5)
        assert one.cost_tokens == 3 * 5 + 5 + per_step + 5
        assert len(set(one.expert_choices)) == 1             # the winner decodes alone once the budget is spent


def test_collab_method_end_to_end(tmp_path) -> None:
    """The registered method: loads the world's experts and a reward_model artifact, decodes text with per-token
    expert choices; bad options are named."""
    from fr_bench.config import ConfigError
    from fr_bench.methods import get_method_class

    world, _ = save_tiny_world(tmp_path)
    rm_dir = tmp_path / "rm"
    tiny_reward_model("llama", 40).save_pretrained(rm_dir)
    tiny_tokenizer().save_pretrained(rm_dir)
    (rm_dir / "reward_model.json").write_text(json.dumps({"max_length": 64}))
    cls = get_method_class("collab")
    method = cls(world, {"top_k": 2, "rollout_tokens": 2, "rollout_budget": -1, "batch_size": 2})
    assert method.requires() == ["reward_model"]
    with one_thread():
        method.load({"reward_model": rm_dir})
        out = method.generate(["w1 w2 w3", "w4 w5"], max_new_tokens=5, stop=[])
    assert all(len(g.expert_choices) == len(g.token_ids) > 0 for g in out)
    assert all(set(g.expert_choices) <= {0, 1, 2} for g in out)
    with pytest.raises(ConfigError, match="rollout_budget=5 is below one look-ahead step"):
        cls(world, {"rollout_budget": 5}).load({"reward_model": rm_dir})
    with pytest.raises(ConfigError, match="top_k=0 must be >= 1"):
        cls(world, {"top_k": 0})
