"""Model merging: the arithmetic of each method on hand-made state dicts, then a real merge of tiny checkpoints."""
from __future__ import annotations

import json

import pytest
import torch

from baselines.merging import (MergeConfig, SafetensorsCheckpoint, build_merged_model, dare_sparsify, merge,
                               sign_consensus_mean, topk_mask)
from fr_bench.config import ConfigError


def _states(n_experts: int = 3, seed: int = 0) -> tuple[dict, list[dict]]:
    g = torch.Generator().manual_seed(seed)
    base = {"w": torch.randn(64, 32, generator=g), "b": torch.randn(32, generator=g),
            "ids": torch.arange(5), "half": torch.randn(8, generator=g).to(torch.bfloat16)}
    experts = []
    for _ in range(n_experts):
        e = {k: (v + torch.randn(v.shape, generator=g).to(v.dtype) if torch.is_floating_point(v) else v + 7)
             for k, v in base.items()}
        experts.append(e)
    return base, experts


@pytest.mark.parametrize("method", ["task_arithmetic", "ties", "dare", "dare_ties"])
def test_lambda_zero_gives_the_base_exactly(method: str) -> None:
    base, experts = _states()
    out = merge(base, experts, method=method, lam=0.0)
    for k in base:
        assert torch.equal(out[k], base[k]), k


def test_one_expert_lambda_one_gives_that_expert() -> None:
    base, experts = _states(1)
    for method in ("task_arithmetic", "ties"):
        out = merge(base, experts, method=method, lam=1.0, density=1.0 if method == "ties" else None)
        for k in ("w", "b"):
            torch.testing.assert_close(out[k], experts[0][k], rtol=0, atol=1e-6)
    # DARE with density 1 drops nothing
    out = merge(base, experts, method="dare", lam=1.0, density=1.0)
    torch.testing.assert_close(out["w"], experts[0]["w"], rtol=0, atol=1e-6)


def test_task_arithmetic_is_base_plus_lambda_sum_of_task_vectors() -> None:
    base, experts = _states(3)
    out = merge(base, experts, method="task_arithmetic", lam=0.4)
    want = base["w"] + 0.4 * sum(e["w"] - base["w"] for e in experts)
    torch.testing.assert_close(out["w"], want)


def test_non_float_tensors_are_copied_from_base_and_dtype_is_kept() -> None:
    base, experts = _states()
    out = merge(base, experts, method="ties", lam=1.0)
    assert torch.equal(out["ids"], base["ids"])          # experts' ids (+7) ignored
    assert out["half"].dtype == torch.bfloat16


@pytest.mark.parametrize("density", [0.1, 0.2, 0.5, 0.73])
def test_ties_trim_keeps_exactly_the_top_density_fraction(density: float) -> None:
    delta = torch.randn(64, 32)
    mask = topk_mask(delta, density)
    k = round(density * delta.numel())
    assert int(mask.sum()) == k
    assert delta.abs()[mask].min() >= delta.abs()[~mask].max()   # the kept ones are the largest


def test_ties_sign_election_and_disjoint_mean_by_hand() -> None:
    deltas = torch.tensor([[3.0, -1.0, 0.0, 2.0],
                           [-1.0, -1.0, 0.0, -5.0],
                           [-1.0, 4.0, 0.0, 0.0]])
    # col0: sum +1 -> sign +, mean of {3} = 3; col1: sum +2 -> +, {4}; col2: all zero; col3: sum -3 -> -, {-5}
    assert sign_consensus_mean(deltas).tolist() == [3.0, 4.0, 0.0, -5.0]


def test_ties_merge_matches_the_three_steps() -> None:
    base, experts = _states(3)
    out = merge(base, experts, method="ties", lam=0.7, density=0.2)
    deltas = torch.stack([(e["w"] - base["w"]) * topk_mask(e["w"] - base["w"], 0.2) for e in experts])
    torch.testing.assert_close(out["w"], base["w"] + 0.7 * sign_consensus_mean(deltas))


def test_dare_keeps_about_density_and_rescales_to_stay_unbiased() -> None:
    delta = torch.randn(200, 100)
    out = dare_sparsify(delta, 0.1, torch.Generator().manual_seed(0))
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.1) < 0.01          # 20k draws: sd of the fraction ~0.002
    torch.testing.assert_close(out[kept], delta[kept] / 0.1)      # survivors rescaled by 1/(1-p)


def test_dare_is_seeded_per_tensor_and_different_across_seeds() -> None:
    base, experts = _states(2)
    a = merge(base, experts, method="dare", lam=1.0, density=0.3, seed=1)
    b = merge(dict(reversed(list(base.items()))), experts, method="dare", lam=1.0, density=0.3, seed=1)
    c = merge(base, experts, method="dare", lam=1.0, density=0.3, seed=2)
    assert torch.equal(a["w"], b["w"])      # the visiting order does not change the masks
    assert not torch.equal(a["w"], c["w"])


def test_shape_mismatch_error_names_tensor_shapes_and_fix() -> None:
    base, experts = _states(2)
    experts[1]["w"] = torch.randn(70, 32)  # e.g. a resized embedding
    with pytest.raises(ValueError) as err:
        merge(base, experts, expert_names=["math", "code"])
    msg = str(err.value)
    assert "'w'" in msg and "(64, 32)" in msg and "code shape (70, 32)" in msg and "on_shape_mismatch=base" in msg
    out = merge(base, experts, on_shape_mismatch="base")
    assert torch.equal(out["w"], base["w"]) and not torch.equal(out["b"], base["b"])


def test_missing_tensor_and_bad_settings_are_named() -> None:
    base, experts = _states(1)
    del experts[0]["b"]
    with pytest.raises(KeyError, match="no tensor 'b'"):
        merge(base, experts)
    with pytest.raises(ConfigError, match="density"):
        merge(base, [base], method="dare", density=0.0)
    with pytest.raises(ConfigError, match="task_arithmetic"):
        merge(base, [base], method="task_arithmetic", density=0.5)
    with pytest.raises(ConfigError, match="not one of"):
        merge(base, [base], method="slerp")


@pytest.mark.parametrize("tie", [False, True])
def test_build_merged_model_writes_a_loadable_checkpoint(tmp_path, tie: bool) -> None:
    from baseline_fixtures import make_lm, make_tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = make_tokenizer(tmp_path / "tok")
    base = make_lm(tmp_path / "base", tok, seed=0, tie=tie)
    experts = [make_lm(tmp_path / f"e{i}", tok, seed=i + 1, tie=tie) for i in range(2)]
    out = build_merged_model(tmp_path / "base", [tmp_path / "e0", tmp_path / "e1"], MergeConfig(lam=0.5),
                             tmp_path / "merged", method="task_arithmetic")
    merged = AutoModelForCausalLM.from_pretrained(out)
    sb, s0, s1, sm = (m.state_dict() for m in (base, *experts, merged))
    for k in sm:
        torch.testing.assert_close(sm[k], sb[k] + 0.5 * ((s0[k] - sb[k]) + (s1[k] - sb[k])), msg=k)
    if tie:
        assert merged.lm_head.weight.data_ptr() == merged.model.embed_tokens.weight.data_ptr()
    assert AutoTokenizer.from_pretrained(out).get_vocab() == tok.get_vocab()
    meta = json.loads((out / "merge.json").read_text())
    # every weight changes except the norms, which are all-ones in every random model
    assert meta["method"] == "task_arithmetic" and 0.9 < meta["fraction_of_parameters_changed"] < 1
    assert set(SafetensorsCheckpoint(out)) >= {"model.embed_tokens.weight"}


@pytest.mark.slow
def test_merged_model_method_decodes_the_merge_through_the_engine(tmp_path) -> None:
    """One expert, λ = 1: the merge is that expert, so `task_arithmetic` must answer exactly as the expert does."""
    from baseline_fixtures import make_lm, make_tokenizer, train_to_say

    from fr_bench.methods import get_method_class
    from fr_bench.world import World

    tok = make_tokenizer(tmp_path / "tok")
    make_lm(tmp_path / "base", tok, seed=0)
    train_to_say(tmp_path / "good", tok, ["question a b", "question c d e"], "good yes good", seed=1)
    world = World(tokenizer=str(tmp_path / "tok"), base=str(tmp_path / "base"),
                  experts={"good": str(tmp_path / "good")}, router_init=str(tmp_path / "base"), sft_data={})
    build_merged_model(world.base, list(world.experts.values()), MergeConfig(lam=1.0), tmp_path / "ta",
                       method="task_arithmetic", tokenizer_path=world.tokenizer)
    method = get_method_class("task_arithmetic")(world, {"batch_size": 2}, seed=0)
    method.load({"merge_task_arithmetic": tmp_path / "ta"})
    gens = method.generate(["question a b", "question f"], max_new_tokens=5, stop=["yes"])
    assert [g.text for g in gens] == ["good ", "good "]   # stop string cuts after the first word
    assert all(g.cost_tokens > 0 and g.expert_choices is None for g in gens)
