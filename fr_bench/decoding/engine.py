"""One decode loop for every token-level method (FusionRoute, its ablations, single models, confidence routing).

The engine holds a list of causal LMs that share one vocabulary. Each model owns its KV cache and a count of how many
positions of the shared token buffer it has consumed (`CachedModel.seen`). At every step a *policy*
(`fr_bench.decoding.policies`) asks for the next-token outputs of the models it needs and returns one row of logits
per prompt; the engine picks the token, appends it to every row, and handles stopping, padding and cost accounting.

Lazy catch-up: a model runs only at steps where the policy asks for it, and then consumes every position it has not
seen yet in ONE forward (prompt and all tokens generated since its last run). Rows advance in lock-step, so `seen` is
one number per model: when any row needs model m at step t, m catches up for the whole batch. With `lazy=False`
(the naive reference) every model runs every step; both modes compute the same logits for the same positions, so
their outputs agree token for token (up to float rounding of batched vs. one-token matmuls).

Batches are left-padded: `attention_mask` marks the padding and `position_ids` start at 0 on each row's first real
token, so a row decodes the same tokens alone or in a batch. Finished rows (eos or a stop string) leave the batch:
their cache rows are dropped from every model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import torch
from torch import nn

from ..methods.base import Generation


@dataclass
class ModelOutput:
    logits: torch.Tensor                         # [B, V] float32 next-token logits at the last position
    routing_logits: torch.Tensor | None = None   # [B, N] routing scores (router models only)


Run = Callable[[int], ModelOutput]


class Policy(Protocol):
    """Which models to consult at a step and how to combine them: returns logits [B, V] and per-row expert choices
    [B] (None for methods that do not route). `run(i)` catches model i up and returns its outputs."""

    def step(self, run: Run) -> tuple[torch.Tensor, torch.Tensor | None]: ...


class TokenBuffer:
    """Left-padded token ids of the active rows (prompt, then generated tokens) with padding mask and positions."""

    def __init__(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, pad_id: int, device: torch.device):
        width = max(len(p) for p in prompts)
        self.pads = [width - len(p) for p in prompts]
        ids = torch.full((len(prompts), width + max_new_tokens), pad_id, dtype=torch.long)
        for row, (prompt, pad) in enumerate(zip(prompts, self.pads)):
            ids[row, pad:width] = torch.tensor(prompt, dtype=torch.long)
        offset = torch.arange(ids.shape[1]) - torch.tensor(self.pads).unsqueeze(1)
        self.ids = ids.to(device)
        self.mask = (offset >= 0).long().to(device)
        self.positions = offset.clamp(min=0).to(device)
        self.length = width

    @property
    def padded(self) -> bool:
        return any(self.pads)

    def append(self, tokens: torch.Tensor) -> None:
        self.ids[:, self.length] = tokens
        self.length += 1

    def keep(self, rows: list[int], index: torch.Tensor) -> None:
        self.ids, self.mask, self.positions = self.ids[index], self.mask[index], self.positions[index]
        self.pads = [self.pads[r] for r in rows]


class CachedModel:
    """One model with its own KV cache and the number of buffer positions it has consumed."""

    def __init__(self, model: nn.Module) -> None:
        from transformers import DynamicCache

        self.model = model
        self._new_cache = lambda: DynamicCache(config=model.config)  # config: sliding-window layers (Gemma-2)
        self.cache = self._new_cache()
        self.seen = 0

    def reset(self) -> None:
        self.cache, self.seen = self._new_cache(), 0

    def catch_up(self, buf: TokenBuffer) -> ModelOutput:
        """Consume positions [seen, buf.length) in one forward; outputs for the last position only."""
        start, end = self.seen, buf.length
        out = self.model(input_ids=buf.ids[:, start:end], position_ids=buf.positions[:, start:end],
                         attention_mask=buf.mask[:, :end] if buf.padded else None,
                         past_key_values=self.cache, use_cache=True, logits_to_keep=1)
        self.seen = end
        routing = getattr(out, "routing_logits", None)
        return ModelOutput(out.logits[:, -1].float(), None if routing is None else routing[:, -1].float())

    def keep(self, index: torch.Tensor) -> None:
        self.cache.batch_select_indices(index)

    def cache_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for layer in self.cache.layers if layer.is_initialized
                   for t in (layer.keys, layer.values))


@dataclass
class DecodeStats:
    """Counts over one `generate` call; `catch_up_steps` = steps (after the first) where some model ran >1 token."""

    steps: int = 0
    catch_up_steps: int = 0
    forwards: list[int] = field(default_factory=list)      # per model: forward calls
    tokens: list[int] = field(default_factory=list)        # per model: positions run (batch rows x tokens)
    cache_bytes: int = 0                                   # KV bytes of all models when a batch ended (max)

    @property
    def catch_up_share(self) -> float:
        return self.catch_up_steps / max(self.steps - 1, 1)


@dataclass
class Decoded:
    """One prompt's output; `token_ids` are all generated tokens including a final eos."""

    text: str
    token_ids: list[int]
    expert_choices: list[int] | None
    cost_tokens: int          # positions of this row that went through any model forward (padding excluded)
    finish_reason: str        # "eos" | "stop" | "length"

    def to_generation(self) -> Generation:
        return Generation(text=self.text, token_ids=self.token_ids, expert_choices=self.expert_choices,
                          cost_tokens=self.cost_tokens)


@dataclass
class _Row:
    prompt_index: int
    pad: int
    tokens: list[int] = field(default_factory=list)
    choices: list[int] = field(default_factory=list)
    cost: int = 0
    finish: str = "length"
    text: str | None = None


class StopStrings:
    """Incremental stop-string check: decode only a tail window, confirm a hit on the full text.

    Every token decodes to at least one byte and a character is at most 4 bytes, so a stop string of c characters
    ends within the last 4c+2 tokens; the window filter is cheap and the full decode runs only on a hit."""

    def __init__(self, tokenizer: Any, stops: Sequence[str]) -> None:
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.window = 4 * max((len(s) for s in self.stops), default=0) + 2

    def __bool__(self) -> bool:
        return bool(self.stops)

    def find(self, tokens: list[int]) -> str | None:
        """The text before the first stop string if the tokens contain one, else None."""
        tail = self.tokenizer.decode(tokens[-self.window:], skip_special_tokens=False)
        if not any(s in tail for s in self.stops):
            return None
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        cuts = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        return text[:min(cuts)] if cuts else None


def eos_token_ids(tokenizer: Any, models: Sequence[nn.Module]) -> set[int]:
    """The tokenizer's eos plus every eos the models' generation configs list (chat models often have several)."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    for model in models:
        eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        ids |= set(eos) if isinstance(eos, (list, tuple)) else ({eos} if eos is not None else set())
    return ids


class DecodeEngine:
    """Decode prompts with `models` under `policy`; `lazy=False` runs every model every step (naive reference)."""

    def __init__(self, models: Sequence[nn.Module], policy: Policy, tokenizer: Any,
                 eos_ids: set[int] | None = None, lazy: bool = True) -> None:
        self.models = [CachedModel(m) for m in models]
        self.policy = policy
        self.tokenizer = tokenizer
        self.eos_ids = eos_token_ids(tokenizer, models) if eos_ids is None else set(eos_ids)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids, default=0)
        self.lazy = lazy
        self.device = next(models[0].parameters()).device

    def generate(self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] = (),
                 batch_size: int = 8, temperature: float = 0.0, seed: int = 0) -> tuple[list[Decoded], DecodeStats]:
        ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        return self.generate_ids(ids, max_new_tokens, stop, batch_size, temperature, seed)

    @torch.inference_mode()
    def generate_ids(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, stop: Sequence[str] = (),
                     batch_size: int = 8, temperature: float = 0.0,
                     seed: int = 0) -> tuple[list[Decoded], DecodeStats]:
        """Token-id prompts in, one `Decoded` per prompt (same order) out. Prompts are batched by length."""
        for i, p in enumerate(prompts):
            if not p:
                raise ValueError(f"prompt {i} encodes to no tokens; the engine needs at least one token to condition on")
        stats = DecodeStats(forwards=[0] * len(self.models), tokens=[0] * len(self.models))
        stops = StopStrings(self.tokenizer, stop)
        generator = torch.Generator(device=self.device).manual_seed(seed) if temperature > 0 else None
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: dict[int, Decoded] = {}
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            for row in self._decode_batch([prompts[i] for i in chunk], chunk, max_new_tokens, stops, temperature,
                                          generator, stats):
                results[row.prompt_index] = self._finish(row)
            stats.cache_bytes = max(stats.cache_bytes, sum(m.cache_bytes() for m in self.models))
        for m in self.models:                     # release the caches between calls
            m.reset()
        return [results[i] for i in range(len(prompts))], stats

    def _decode_batch(self, prompts: list[Sequence[int]], indices: list[int], max_new_tokens: int, stops: StopStrings,
                      temperature: float, generator: torch.Generator | None, stats: DecodeStats) -> list[_Row]:
        buf = TokenBuffer(prompts, max_new_tokens, self.pad_id, self.device)
        rows = [_Row(i, pad) for i, pad in zip(indices, buf.pads)]
        active = list(rows)
        for m in self.models:
            m.reset()
        for step in range(max_new_tokens):
            outputs: dict[int, ModelOutput] = {}
            spans: list[int] = []

            def run(i: int) -> ModelOutput:
                if i not in outputs:
                    model = self.models[i]
                    start, end = model.seen, buf.length
                    outputs[i] = model.catch_up(buf)
                    spans.append(end - start)
                    stats.forwards[i] += 1
                    stats.tokens[i] += (end - start) * len(active)
                    for row in active:
                        row.cost += end - max(start, row.pad)
                return outputs[i]

            if not self.lazy:
                for i in range(len(self.models)):
                    run(i)
            logits, choices = self.policy.step(run)
            tokens = _pick(logits, temperature, generator)
            buf.append(tokens)
            stats.steps += 1
            stats.catch_up_steps += step > 0 and max(spans) > 1
            if choices is None:                     # one device sync per step for the tokens (and choices)
                token_list, choice_list = tokens.tolist(), None
            else:
                token_list, choice_list = torch.stack([tokens, choices.to(tokens.device)]).tolist()
            finished = []
            for j, row in enumerate(active):
                row.tokens.append(token_list[j])
                if choice_list is not None:
                    row.choices.append(choice_list[j])
                if token_list[j] in self.eos_ids:
                    row.finish = "eos"
                elif stops and (text := stops.find(row.tokens)) is not None:
                    row.finish, row.text = "stop", text
                else:
                    continue
                finished.append(j)
            if len(finished) == len(active):
                break
            if finished:
                keep = [j for j in range(len(active)) if j not in finished]
                index = torch.tensor(keep, device=self.device)
                buf.keep(keep, index)
                for m in self.models:
                    m.keep(index)
                active = [active[j] for j in keep]
        return rows

    def _finish(self, row: _Row) -> Decoded:
        if row.text is None:
            body = row.tokens[:-1] if row.finish == "eos" else row.tokens
            row.text = self.tokenizer.decode(body, skip_special_tokens=True)
        return Decoded(text=row.text, token_ids=row.tokens, expert_choices=row.choices if row.choices else None,
                       cost_tokens=row.cost, finish_reason=row.finish)


def _pick(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
