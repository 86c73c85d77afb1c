"""The loss maths of FusionRoute training as small pure functions (TRL's habit), unit-tested against hand values.

Alignment convention for every function here: position t of `logits`, `routing_logits`, `labels` and the expert
signals is the prediction of token t+1 of the sequence, i.e. inputs are already shifted (`logits[:, :-1]`,
`labels[:, 1:]`). `labels == -100` marks positions that carry no loss (prompt, padding).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


@dataclass
class ExpertSignal:
    """What the frozen experts say about the gold tokens of a batch (built once, see `expert_signals`).

    gold_logps:  [B, T, N] log p_i(y_t) of each expert for the gold token (any value where no loss is taken).
    vocab_logps: [P, N, K] the experts' log-probs over K vocabulary entries at the P positions where the routing mask
                 is True, in row-major order of that mask (paper_logmix only). K = |V| in full-vocab mode.
    gold_index:  [P] index of the gold token among the K entries.
    vocab_valid: [P, K] False on padding entries (top-k mode); None when every entry is real.
    """

    gold_logps: torch.Tensor
    vocab_logps: torch.Tensor | None = None
    gold_index: torch.Tensor | None = None
    vocab_valid: torch.Tensor | None = None


def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Token-mean next-token cross-entropy over positions with a label."""
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX)


def _routing_weights(routing_logits: torch.Tensor, weights: str) -> torch.Tensor:
    if weights == "softmax":
        return routing_logits.float().softmax(-1)
    if weights == "raw":
        return routing_logits.float()
    raise ValueError(f"weights = {weights!r}: use 'softmax' or 'raw'.")


def routing_loss(routing_logits: torch.Tensor, expert_signal: ExpertSignal, mask: torch.Tensor, kind: str,
                 weights: str = "softmax") -> torch.Tensor:
    """Mean routing loss over the positions where `mask` is True (informative response positions).

    kind = "paper_logmix": z_mix = sum_i w_i * log_softmax(z_i) over the vocabulary, loss = -log_softmax(z_mix)[y].
    kind = "mixture":      loss = -log sum_i w_i * p_i(y)   (w = softmax of the head scores).
    kind = "argmax":       cross-entropy of the head scores against argmax_i p_i(y).
    A batch without informative positions gives a zero that still depends on the head (so DDP-style graphs agree).
    """
    mask = mask.bool()
    scores = routing_logits[mask]                                        # [P, N]
    if scores.shape[0] == 0:
        return routing_logits.sum() * 0.0
    if kind == "paper_logmix":
        if expert_signal.vocab_logps is None or expert_signal.gold_index is None:
            raise ValueError("route loss 'paper_logmix' needs the experts' vocabulary log-probs; build the expert "
                             "signal with vocab=True (SFTConfig.route_loss='paper_logmix' does so).")
        vocab = expert_signal.vocab_logps.float()                        # [P, N, K]
        if vocab.shape[0] != scores.shape[0]:
            raise ValueError(f"vocab_logps has {vocab.shape[0]} positions but the mask selects {scores.shape[0]}; "
                             "the signal and the batch are misaligned.")
        valid = expert_signal.vocab_valid
        if valid is not None:
            vocab = vocab.masked_fill(~valid[:, None, :], 0.0)
        # fp32 even under bf16 autocast (which would run the einsum in bf16 and blur the mixture's log-probs)
        with torch.autocast(vocab.device.type, enabled=False):
            mixed = torch.einsum("pn,pnk->pk", _routing_weights(scores, weights), vocab)
        if valid is not None:
            mixed = mixed.masked_fill(~valid, float("-inf"))
        logp = mixed.log_softmax(-1).gather(-1, expert_signal.gold_index[:, None].long()).squeeze(-1)
        return -logp.mean()
    gold = expert_signal.gold_logps[mask].float()                        # [P, N]
    if kind == "mixture":
        if weights != "softmax":
            raise ValueError("route loss 'mixture' needs softmax weights (a probability mixture).")
        return -torch.logsumexp(scores.float().log_softmax(-1) + gold, dim=-1).mean()
    if kind == "argmax":
        return F.cross_entropy(scores.float(), gold.argmax(-1))
    raise ValueError(f"route loss kind {kind!r}: use paper_logmix, mixture or argmax.")


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[B] sum over labelled positions of log_softmax(logits)[label]."""
    mask = labels != IGNORE_INDEX
    logp = logits.float().log_softmax(-1).gather(-1, labels.clamp_min(0)[..., None]).squeeze(-1)
    return (logp * mask).sum(-1)


def combined_logps(router_logits: torch.Tensor, labels: torch.Tensor,
                   expert_logps: torch.Tensor | None = None) -> torch.Tensor:
    """[B] log pi(y|x) of the combined system: sum_t log_softmax(z_e(t) + z_router(t))[y_t].

    `expert_logps` [B, T, V] is the selected expert's log-softmax (a constant): adding log-probs instead of logits
    changes nothing after the log-softmax, and it is what the decoder adds. None gives the router LM alone.
    """
    logits = router_logits.float()
    if expert_logps is not None:
        logits = logits + expert_logps.float()
    return sequence_logps(logits, labels)


def cdpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
              ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, beta: float,
              bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair DPO loss -log sigmoid(beta * (chosen log-ratio - rejected log-ratio) + bias), TRL's shape.

    `bias` is added inside the sigmoid as given (stop-gradient): the paper form passes
    beta * (log pi_expert(y_w) - log pi_expert(y_l)). Returns (losses, chosen_rewards, rejected_rewards), the
    rewards being beta * (policy - reference) log-ratios, detached.
    """
    chosen_ratio = policy_chosen_logps - ref_chosen_logps
    rejected_ratio = policy_rejected_logps - ref_rejected_logps
    logits = beta * (chosen_ratio - rejected_ratio)
    if bias is not None:
        logits = logits + bias.detach()
    losses = -F.logsigmoid(logits)
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()
