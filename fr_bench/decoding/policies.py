"""Decode policies: at each step, which models to consult and how to turn their logits into one distribution.

A policy is a small object with `step(run) -> (logits [B, V], choices [B] | None)`; `run(i)` returns model i's
next-token outputs (running it, with lazy catch-up, only when asked) and `run(i, rows)` computes them only for batch
rows `rows`. Model indices refer to the engine's model list.
A new token-level routing idea is one such class registered with `@register_policy("name")` (here, in its
own file, or in a plug-in) plus a YAML entry `{method: fusionroute, options: {policy: name, policy_options: {...}}}`:
the `fusionroute` method loads the trained router and the experts and builds the policy with
`cls(router=0, experts=[1, ..., N], **policy_options)` (docs/decoding.md, "Write a policy").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..registry import Registry, RegistryError
from .engine import ModelOutput, Policy, Run

CONFIDENCE_CRITERIA = ("max_prob", "entropy")


POLICIES: Registry[type[Policy]] = Registry("policy")


def register_policy(name: str) -> Callable[[type[Policy]], type[Policy]]:
    """Decorator on a policy class: a class with `step(run) -> (logits, choices | None)` (the engine's `Policy`)."""
    def deco(cls: type[Policy]) -> type[Policy]:
        if not (isinstance(cls, type) and callable(getattr(cls, "step", None))):
            raise RegistryError(f"policy '{name}': {cls!r} is not a class with a step(run) method")
        return POLICIES.add(name, cls)

    return deco


@register_policy("single_model")
@dataclass
class SingleModel:
    """One model decodes alone: a domain expert, the base, a merged or fine-tuned model."""

    model: int = 0

    def step(self, run: Run) -> tuple[torch.Tensor, None]:
        return run(self.model).logits, None


def routed_logits(run: Run, experts: list[int], choices: torch.Tensor) -> torch.Tensor:
    """Row b gets the logits of expert `experts[choices[b]]`; each chosen expert runs only on the rows that chose it
    (one host sync for the choices)."""
    rows: dict[int, list[int]] = {}
    for b, e in enumerate(choices.tolist()):
        rows.setdefault(e, []).append(b)
    chosen = sorted(rows)
    logits = run(experts[chosen[0]], rows[chosen[0]]).logits
    for e in chosen[1:]:
        logits = torch.where((choices == e).unsqueeze(-1), run(experts[e], rows[e]).logits, logits)
    return logits


@register_policy("fusionroute")
@dataclass
class FusionRoute:
    """FusionRoute (arXiv 2601.05106): the router picks one expert per token and adds its own logits.

    e_t = argmax_i softmax(W h_t)_i, then log pi(y_t) = log_softmax(z_router) + log_softmax(z_{e_t}), the paper's rule.
    It is z_router + z_{e_t} less one constant per row, so it defines the same distribution as plain logit addition:
    there is no separate "logit" rule to ablate. `complement=False` is the ablation without complementary logits:
    the selected expert's logits alone.
    """

    router: int
    experts: list[int]
    complement: bool = True

    def step(self, run: Run) -> tuple[torch.Tensor, torch.Tensor]:
        router = run(self.router)
        choices = self.choose(router)
        expert = routed_logits(run, self.experts, choices)
        if not self.complement:
            return expert, choices
        return expert.log_softmax(-1) + router.logits.log_softmax(-1), choices

    def choose(self, router: ModelOutput) -> torch.Tensor:
        """e_t per row: the argmax of the routing weights (= argmax of the head's scores)."""
        return router.routing_logits.argmax(-1)


@register_policy("confidence")
@dataclass
class Confidence:
    """Confidence routing, not Collab (that is `fr_bench/decoding/collab.py`): every expert runs each step and the
    most confident one (highest max probability, or lowest entropy) decides the token; training-free, no reward
    model."""

    experts: list[int]
    criterion: str = "max_prob"

    def __post_init__(self) -> None:
        if self.criterion not in CONFIDENCE_CRITERIA:
            raise ValueError(f"criterion '{self.criterion}' is unknown; use one of {CONFIDENCE_CRITERIA}")

    def step(self, run: Run) -> tuple[torch.Tensor, torch.Tensor]:
        logits = torch.stack([run(i).logits for i in self.experts])          # [N, B, V]
        logp = logits.log_softmax(-1)
        if self.criterion == "max_prob":
            score = logp.max(-1).values
        else:
            score = (logp.exp() * logp).nansum(-1)                            # -entropy
        choices = score.argmax(0)                                            # [B]
        return logits[choices, torch.arange(logits.shape[1], device=logits.device)], choices
