"""Loss functions against values worked out by hand (fr_bench/training/losses.py)."""
from __future__ import annotations

import math

import pytest
import torch

from fr_bench.training.losses import (ExpertSignal, cdpo_loss, combined_logps, lm_loss, routing_loss,
                                      sequence_logps)

L = math.log


def _signal_two_positions() -> tuple[torch.Tensor, ExpertSignal, torch.Tensor]:
    """Batch of 1 x 2 positions, 2 experts. Position 0 is informative; position 1 is not and holds values that would
    move every loss if it were counted."""
    routing = torch.tensor([[[0.0, 0.0], [5.0, -5.0]]])
    gold = torch.tensor([[[L(0.2), L(0.6)], [L(1e-6), L(0.9)]]])
    mask = torch.tensor([[True, False]])
    return routing, ExpertSignal(gold_logps=gold), mask


def test_mixture_loss_counts_only_informative_positions() -> None:
    routing, signal, mask = _signal_two_positions()
    # w = (1/2, 1/2): mixture likelihood 0.5*0.2 + 0.5*0.6 = 0.4
    assert routing_loss(routing, signal, mask, "mixture").item() == pytest.approx(-L(0.4), rel=1e-6)
    both = routing_loss(routing, signal, torch.ones_like(mask), "mixture").item()
    # second position: w = softmax(5,-5), likelihood w0*1e-6 + w1*0.9
    w0 = 1 / (1 + math.exp(-10))
    assert both == pytest.approx((-L(0.4) - L(w0 * 1e-6 + (1 - w0) * 0.9)) / 2, rel=1e-5)


def test_argmax_loss_is_cross_entropy_against_best_expert() -> None:
    routing = torch.tensor([[[0.0, L(3.0)]]])                      # softmax = (0.25, 0.75)
    signal = ExpertSignal(gold_logps=torch.tensor([[[L(0.6), L(0.2)]]]))  # expert 0 is best
    assert routing_loss(routing, signal, torch.tensor([[True]]), "argmax").item() == pytest.approx(-L(0.25), rel=1e-6)


def _two_expert_vocab() -> torch.Tensor:
    return torch.tensor([[[L(0.5), L(0.25), L(0.25)], [L(0.25), L(0.25), L(0.5)]]])  # [P=1, N=2, V=3]


def test_paper_logmix_full_vocab() -> None:
    routing = torch.tensor([[[0.0, 0.0], [3.0, 1.0]]])
    mask = torch.tensor([[True, False]])
    signal = ExpertSignal(gold_logps=torch.zeros(1, 2, 2), vocab_logps=_two_expert_vocab(),
                          gold_index=torch.tensor([1]))
    # z_mix = 0.5*log p0 + 0.5*log p1 -> unnormalised probs sqrt(.125), .25, sqrt(.125)
    expected = -L(0.25 / (0.25 + 2 * math.sqrt(0.125)))
    assert routing_loss(routing, signal, mask, "paper_logmix").item() == pytest.approx(expected, rel=1e-6)


def test_paper_logmix_stays_fp32_under_bf16_autocast() -> None:
    """bf16 autocast (precision: bf16-mixed) would run the mixture einsum in bf16; the loss must not change."""
    torch.manual_seed(0)
    vocab = torch.randn(6, 3, 50).log_softmax(-1)                  # 6 positions, 3 experts, 50 tokens
    routing = torch.randn(1, 6, 3)
    mask = torch.ones(1, 6, dtype=torch.bool)
    signal = ExpertSignal(gold_logps=torch.zeros(1, 6, 3), vocab_logps=vocab, gold_index=torch.arange(6))
    exact = routing_loss(routing, signal, mask, "paper_logmix")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = routing_loss(routing, signal, mask, "paper_logmix")
    assert mixed.dtype == torch.float32
    assert mixed.item() == pytest.approx(exact.item(), rel=1e-6)


def test_paper_logmix_raw_weights_and_topk_padding() -> None:
    routing = torch.tensor([[[2.0, 0.0]]])                         # raw weights (2, 0): z_mix = 2 log p0
    mask = torch.tensor([[True]])
    vocab = _two_expert_vocab()
    full = ExpertSignal(gold_logps=torch.zeros(1, 1, 2), vocab_logps=vocab, gold_index=torch.tensor([0]))
    # p0^2 = (.25, .0625, .0625)
    assert routing_loss(routing, full, mask, "paper_logmix", weights="raw").item() == pytest.approx(
        -L(0.25 / 0.375), rel=1e-6)
    # entry 2 is padding (top-k mode): the softmax runs over entries 0 and 1 only
    topk = ExpertSignal(gold_logps=torch.zeros(1, 1, 2), vocab_logps=vocab, gold_index=torch.tensor([0]),
                        vocab_valid=torch.tensor([[True, True, False]]))
    assert routing_loss(routing, topk, mask, "paper_logmix", weights="raw").item() == pytest.approx(
        -L(0.25 / 0.3125), rel=1e-6)


def test_routing_loss_without_informative_positions_is_zero_with_a_graph() -> None:
    routing = torch.randn(1, 2, 2, requires_grad=True)
    loss = routing_loss(routing, ExpertSignal(gold_logps=torch.zeros(1, 2, 2)), torch.zeros(1, 2, dtype=torch.bool),
                        "mixture")
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(routing.grad, torch.zeros_like(routing))


def test_routing_loss_rejects_misaligned_vocab_signal() -> None:
    signal = ExpertSignal(gold_logps=torch.zeros(1, 2, 2), vocab_logps=torch.zeros(2, 2, 3),
                          gold_index=torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="misaligned"):
        routing_loss(torch.zeros(1, 2, 2), signal, torch.tensor([[True, False]]), "paper_logmix")


def test_sequence_and_combined_logps() -> None:
    router = torch.tensor([[[0.0, 0.0], [L(3.0), 0.0], [9.0, 9.0]]])   # third position is unlabelled
    expert = torch.tensor([[[L(0.2), L(0.8)], [L(0.5), L(0.5)], [0.0, -50.0]]])
    labels = torch.tensor([[1, 0, -100]])
    assert sequence_logps(router, labels).item() == pytest.approx(L(0.5) + L(0.75), rel=1e-6)
    # position 0: softmax(log .2, log .8)[1] = .8 ; position 1: softmax(log 1.5, log .5)[0] = .75
    assert combined_logps(router, labels, expert).item() == pytest.approx(L(0.8) + L(0.75), rel=1e-6)
    assert combined_logps(router, labels).item() == pytest.approx(sequence_logps(router, labels).item())


def test_lm_loss_ignores_masked_labels() -> None:
    logits = torch.tensor([[[0.0, L(3.0)], [100.0, -100.0]]])
    assert lm_loss(logits, torch.tensor([[1, -100]])).item() == pytest.approx(-L(0.75), rel=1e-6)


def test_cdpo_loss_values_rewards_and_stop_gradient_bias() -> None:
    pc = torch.tensor([-1.0], requires_grad=True)
    pr = torch.tensor([-3.0], requires_grad=True)
    rc, rr = torch.tensor([-2.0]), torch.tensor([-2.0])
    bias = torch.tensor([0.3], requires_grad=True)
    losses, chosen, rejected = cdpo_loss(pc, pr, rc, rr, beta=0.1)
    assert losses.item() == pytest.approx(math.log1p(math.exp(-0.2)), rel=1e-6)
    assert chosen.item() == pytest.approx(0.1) and rejected.item() == pytest.approx(-0.1)
    biased, _, _ = cdpo_loss(pc, pr, rc, rr, beta=0.1, bias=bias)
    assert biased.item() == pytest.approx(math.log1p(math.exp(-0.5)), rel=1e-6)
    biased.sum().backward()
    assert bias.grad is None and pc.grad is not None
    # d/d pc of -log sigmoid(0.1*(pc-pr)+0.3) = -0.1 * sigmoid(-0.5)
    assert pc.grad.item() == pytest.approx(-0.1 / (1 + math.exp(0.5)), rel=1e-6)
