"""The scripted token-level oracle of `micro_mixed`: each expert writes the segments of its own domain.

A mixed row's `segments` (fr_bench.micro.generators.mixed) cut the gold response into pieces with the domain whose
expert writes each. `token_schedule` turns them into one model index per response token (the token's first
character decides its segment); `ScheduledExpert` is the decode policy that follows such a schedule. It holds one
schedule, so it decodes one prompt per engine call: rows leave a batch when they finish, and a policy never learns
which row left.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..decoding.engine import Run


@dataclass
class ScheduledExpert:
    """Generated token t comes from model `schedule[t]` (its last entry past the end): a scripted router."""

    schedule: list[int]
    _step: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not self.schedule:
            raise ValueError("ScheduledExpert: empty schedule; give one model index per response token")

    def step(self, run: Run) -> tuple[torch.Tensor, torch.Tensor]:
        model = self.schedule[min(self._step, len(self.schedule) - 1)]
        self._step += 1
        logits = run(model).logits
        if logits.shape[0] != 1:
            raise ValueError(f"ScheduledExpert decodes one prompt at a time (got a batch of {logits.shape[0]}); "
                             "use batch_size=1")
        return logits, torch.tensor([model], device=logits.device)


def token_schedule(tokenizer: Any, segments: Sequence[dict[str, str]], model_of: dict[str, int]) -> list[int]:
    """One model index per token of the gold response (the joined segments), from each token's segment domain."""
    text = "".join(s["text"] for s in segments)
    ends, pos = [], 0
    for s in segments:
        pos += len(s["text"])
        ends.append(pos)
    unknown = sorted({s["domain"] for s in segments} - set(model_of))
    if unknown:
        raise KeyError(f"segments name domain(s) {unknown} with no model; have {sorted(model_of)}")
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    schedule = []
    for start, _ in enc["offset_mapping"]:
        k = next(i for i, e in enumerate(ends) if start < e or i == len(ends) - 1)
        schedule.append(model_of[segments[k]["domain"]])
    return schedule


def oracle_outputs(models: Sequence[torch.nn.Module], model_of: dict[str, int], tokenizer: Any,
                   prompts: Sequence[str], segments: Sequence[Sequence[dict[str, str]]], max_new_tokens: int,
                   stop: Sequence[str] = ()) -> list[str]:
    """Greedy outputs of the scripted oracle, one prompt at a time through the decode engine."""
    from ..decoding.engine import DecodeEngine

    engine = DecodeEngine(models, ScheduledExpert([0]), tokenizer)
    outputs = []
    for prompt, segs in zip(prompts, segments, strict=True):
        engine.policy = ScheduledExpert(token_schedule(tokenizer, segs, model_of))
        (decoded,), _ = engine.generate([prompt], max_new_tokens, stop, batch_size=1)
        outputs.append(decoded.text)
    return outputs
