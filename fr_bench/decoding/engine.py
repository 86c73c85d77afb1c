"""One decode loop for every token-level method (FusionRoute, its ablations, single models, confidence routing).

The engine holds a list of causal LMs that share one vocabulary. Each model owns a per-row KV cache and, per batch
row, a count of how many positions of the shared token buffer it has consumed (`CachedModel.seen`). At every step a
*policy* (`fr_bench.decoding.policies`) asks for the next-token outputs of the models it needs, on all rows or on
some (`run(i, rows)`), and returns one row of logits per prompt; the engine picks the token, appends it to every row,
and handles stopping, padding and cost accounting.

Lazy catch-up: a model runs only for the rows and at the steps where the policy asks for it, and then consumes every
position those rows have not shown it yet in ONE forward (prompt and all tokens generated since the row last used
it). An expert one row switches to catches up that row alone, not the batch (`row_cache.py` says why). With
`lazy=False` (the naive reference) every model runs every row every step; both modes compute the same logits for the
same positions, so their outputs agree token for token (up to float rounding of batched vs. one-token matmuls).

Batches are left-padded: `attention_mask` marks the padding and `position_ids` start at 0 on each row's first real
token, so a row decodes the same tokens alone or in a batch. Finished rows (eos or a stop string) leave the batch:
their cache rows are dropped from every model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import torch
from torch import nn
from transformers.masking_utils import create_masks_for_generate

from ..types import Generation
from .row_cache import RowCache


@dataclass
class ModelOutput:
    logits: torch.Tensor                         # [B, V] float32 next-token logits at the last position
    routing_logits: torch.Tensor | None = None   # [B, N] routing scores (router models only)


class Run(Protocol):
    """`run(i)` catches model i up on every row and returns its outputs; `run(i, rows)` only on batch rows `rows`
    (the other rows of the returned tensors are zeros, or outputs computed anyway)."""

    def __call__(self, model: int, rows: Sequence[int] | None = None) -> ModelOutput: ...


class Policy(Protocol):
    """Which models to consult at a step and how to combine them: returns logits [B, V] and per-row expert choices
    [B] (None for methods that do not route)."""

    def step(self, run: Run) -> tuple[torch.Tensor, torch.Tensor | None]: ...


@dataclass
class ActiveBatch:
    """What a look-ahead policy (one with `lookahead = True`, e.g. Collab) sees of the batch besides `run`: the
    token buffer, the engine's models (to fork their caches), and the active rows (to add the cost of work done
    outside `run` and to keep per-row state, `policy_state`, that follows a row when others leave the batch)."""

    buf: "TokenBuffer"
    models: list["CachedModel"]
    rows: list["_Row"]
    step: int


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

    def append(self, tokens: torch.Tensor) -> None:
        self.ids[:, self.length] = tokens
        self.length += 1

    def keep(self, rows: list[int], index: torch.Tensor) -> None:
        self.ids, self.mask, self.positions = self.ids[index], self.mask[index], self.positions[index]
        self.pads = [self.pads[r] for r in rows]


RIDE_LAG = 2       # a row at most this many positions behind rides along in a forward that starts no later
MERGE_SLACK = 32   # rows needing a model run in one forward unless that re-runs more positions than this


def mask_signature(model: nn.Module) -> tuple | None:
    """Models with equal signatures take the same attention masks for the same rows and columns, so a step builds
    them once for all of them (the router and the home expert share them at every step). Masks come from
    transformers' `create_masks_for_generate`, the function `generate` itself uses to prepare them ahead of the
    forward: one mask, or one per layer type (Gemma-2's full and sliding layers); the signature holds the config
    fields it reads. None (each model builds its own) when the model, or an LM it wraps (the router's), belongs to a
    family that overrides that function."""
    if any(hasattr(module, "create_masks_for_generate") for module in model.modules()):
        return None
    config = model.config.get_text_config()
    weight = next(model.parameters())
    layer_types = getattr(config, "layer_types", None)
    return (config._attn_implementation, tuple(sorted(set(layer_types))) if layer_types else None,
            getattr(config, "sliding_window", None), getattr(config, "attention_chunk_size", None),
            weight.dtype, weight.device)


class CachedModel:
    """One model, its per-row KV cache (`RowCache`) and, per batch row, how many buffer positions it has consumed."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.layers = model.config.num_hidden_layers
        self.dtype = next(model.parameters()).dtype
        self.mask_signature = mask_signature(model)
        self.cache: RowCache | None = None
        self.seen: list[int] = []

    def reset(self, buf: TokenBuffer | None = None) -> None:
        """A fresh cache for the batch in `buf` (or none, which releases the memory)."""
        if buf is None:
            self.cache, self.seen = None, []
            return
        rows, width = buf.ids.shape
        self.cache = RowCache(self.layers, rows, initial_capacity=min(width, buf.length + 64), max_capacity=width)
        self.seen = [0] * rows

    def plan(self, need: Sequence[int], end: int, pads: Sequence[int]) -> list[tuple[list[int], int]]:
        """Forwards that bring rows `need` to position `end`: (rows, start) each, rows sorted.

        Rows needing the model go in one forward starting at the earliest position any of them lacks, unless that
        would re-run more than MERGE_SLACK positions of rows that are further ahead (then they split, furthest ahead
        first). Rows not needed ride along when the forward starts at most RIDE_LAG positions back and they have
        every position before its start: this keeps the rows of a model that is used every step (the router, the
        home expert) in lock-step at a cost of a position or two, so a row returning to it never lags far.
        A forward never starts inside the left padding of all its rows (`pads`): an expert a row first switches to
        runs that row's prompt, not the batch's padding in front of it (padding columns are masked out as keys)."""
        groups: list[tuple[list[int], int]] = []
        for r in sorted((r for r in need if self.seen[r] < end), key=lambda r: -self.seen[r]):
            if groups and len(groups[-1][0]) * (groups[-1][1] - self.seen[r]) <= MERGE_SLACK:
                groups[-1] = (groups[-1][0] + [r], self.seen[r])
            else:
                groups.append(([r], self.seen[r]))
        planned = []
        for rows, start in groups:
            if end - start <= RIDE_LAG:
                rows = rows + [r for r in range(len(self.seen)) if start <= self.seen[r] < end and r not in rows]
            planned.append((sorted(rows), max(start, min(pads[r] for r in rows))))
        return planned

    def forward(self, buf: TokenBuffer, rows: list[int], start: int, masks: dict) -> ModelOutput:
        """Run `rows` over buffer positions [start, buf.length); outputs (for those rows) at the last position.
        `masks` holds the step's attention masks, shared by models of one `mask_signature`."""
        end = buf.length
        if len(rows) == buf.ids.shape[0]:
            index, ids, positions, mask = None, buf.ids, buf.positions, buf.mask
        else:
            index = torch.tensor(rows, device=buf.ids.device)
            ids, positions, mask = buf.ids[index], buf.positions[index], buf.mask[index]
        self.cache.select(index, start)
        attention_mask = None
        if any(buf.pads[r] for r in rows):
            attention_mask = self.shared_mask(mask[:, :end], positions[:, start:end], rows, start, masks)
        out = self.model(input_ids=ids[:, start:end], position_ids=positions[:, start:end],
                         attention_mask=attention_mask, past_key_values=self.cache, use_cache=True, logits_to_keep=1)
        for r in rows:
            self.seen[r] = end
        routing = getattr(out, "routing_logits", None)
        return ModelOutput(out.logits[:, -1].float(), None if routing is None else routing[:, -1].float())

    def shared_mask(self, padding: torch.Tensor, positions: torch.Tensor, rows: list[int], start: int,
                    masks: dict) -> Any:
        """The step's prepared masks for these rows and columns, built on first use (after `cache.select`); the
        padding mask itself for a model without a `mask_signature` (it then builds its masks in its forward)."""
        if self.mask_signature is None:
            return padding
        key = (self.mask_signature, tuple(rows), start, padding.shape[1])
        if key not in masks:
            shape_only = torch.empty(len(rows), positions.shape[1], 0, dtype=self.dtype, device=padding.device)
            masks[key] = create_masks_for_generate(config=self.model.config, inputs_embeds=shape_only,
                                                   attention_mask=padding, past_key_values=self.cache,
                                                   position_ids=positions)
        return masks[key]

    def keep(self, rows: list[int], index: torch.Tensor) -> None:
        self.cache.keep(index)
        self.seen = [self.seen[r] for r in rows]

    def cache_bytes(self) -> int:
        return self.cache.nbytes() if self.cache is not None else 0


class StepOutputs:
    """One model's outputs at the current step, gathered over its forwards; rows not run hold zeros."""

    def __init__(self, batch: int) -> None:
        self.batch, self.done = batch, set()
        self.output: ModelOutput | None = None

    def add(self, rows: list[int], out: ModelOutput) -> None:
        self.done.update(rows)
        if self.output is None and len(rows) == self.batch:     # the common case: one forward over every row
            self.output = out
            return
        if self.output is None:
            routing = out.routing_logits
            self.output = ModelOutput(out.logits.new_zeros(self.batch, out.logits.shape[-1]),
                                      None if routing is None else routing.new_zeros(self.batch, routing.shape[-1]))
        index = torch.tensor(rows, device=out.logits.device)
        self.output.logits[index] = out.logits
        if out.routing_logits is not None:
            self.output.routing_logits[index] = out.routing_logits


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
    policy_state: dict = field(default_factory=dict)    # a look-ahead policy's per-row state (its budget used)


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
            m.reset(buf)
        for step in range(max_new_tokens):
            outputs: dict[int, StepOutputs] = {}
            masks: dict = {}
            spans: list[int] = []

            def run(i: int, need: Sequence[int] | None = None) -> ModelOutput:
                need = range(len(active)) if need is None else need
                memo = outputs.setdefault(i, StepOutputs(len(active)))
                if not memo.done.issuperset(need):
                    model = self.models[i]
                    for rows, start in model.plan(need, buf.length, buf.pads):
                        memo.add(rows, model.forward(buf, rows, start, masks))
                        spans.append(buf.length - start)
                        stats.forwards[i] += 1
                        stats.tokens[i] += (buf.length - start) * len(rows)
                        for r in rows:
                            active[r].cost += buf.length - max(start, active[r].pad)
                return memo.output

            if not self.lazy:
                for i in range(len(self.models)):
                    run(i)
            if getattr(self.policy, "lookahead", False):
                logits, choices = self.policy.step(run, ActiveBatch(buf, self.models, active, step))
            else:
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
                    m.keep(keep, index)
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
