"""Collab (Chakraborty et al. 2025) as FusionRoute's paper runs it: at each step every expert proposes its top-k
tokens, each candidate is rolled out greedily by the expert that proposed it, a reward model scores prefix +
candidate + rollout, and the best-scoring candidate is the next token.

Everything reuses the engine's KV caches instead of recomputing prefixes: the experts and the reward model are
models of one `DecodeEngine`, caught up on the shared prefix by `run` like any model, and a step's look-ahead forks
their caches (`fork_cache`: the prefix's keys and values copied once per candidate), so a rollout runs only its own
`rollout_tokens` positions and the reward model only candidate + rollout (one forward per step for all of them).

Budget: a row looks ahead while the rollout tokens it has spent (N experts x k candidates x rollout_tokens per step)
stay within `budget`; after that, and at steps where every candidate is the same token (so looking ahead cannot
change the token), the cheap rule decides: the expert whose candidate won the row's last look-ahead step decodes
greedily (before any look-ahead, the most confident expert: highest top-token probability).
Rollouts end at an eos (the score is read there); stop strings are not checked inside a rollout.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, ClassVar

import torch
from torch import nn

from .engine import ActiveBatch, CachedModel, Run, TokenBuffer
from .row_cache import RowCache


class RewardHeadLM(nn.Module):
    """A reward model (`base_model` + one-output `score` head) as an engine model: its "logits" are the reward at
    each kept position, so the engine caches its prefix like any LM's."""

    def __init__(self, reward_model: nn.Module) -> None:
        super().__init__()
        self.reward_model = reward_model
        self.config = reward_model.config

    def forward(self, input_ids: torch.Tensor, logits_to_keep: int = 0, **kwargs: Any) -> SimpleNamespace:
        hidden = self.reward_model.base_model(input_ids=input_ids, **kwargs).last_hidden_state
        kept = hidden[:, -logits_to_keep:] if logits_to_keep else hidden
        return SimpleNamespace(logits=self.reward_model.score(kept).float())


def fork_cache(model: CachedModel, index: torch.Tensor, length: int, extra: int) -> RowCache:
    """A new cache whose row i holds row `index[i]` of `model`'s cache for columns [0, length), with room for
    `extra` more columns: the prefix is copied, never recomputed."""
    source = model.cache
    fork = RowCache(len(source.layers), len(index), initial_capacity=length + extra, max_capacity=length + extra)
    for src, dst in zip(source.layers, fork.layers):
        for name in ("keys", "values"):
            old = getattr(src, name)
            new = old.new_zeros((len(index), old.shape[1], length + extra, old.shape[3]))
            new[:, :, :length] = old[index, :, :length]
            setattr(dst, name, new)
        dst.dtype, dst.device, dst.is_initialized = src.dtype, src.device, True
    return fork


def _forward(model: nn.Module, cache: RowCache, buf: TokenBuffer, index: torch.Tensor, padded: bool,
             tokens: torch.Tensor, start: int, keep: int) -> torch.Tensor:
    """Run `tokens` [M, n] at buffer columns [start, start + n) on the forked `cache` of buffer rows `index`; the
    padding mask goes in only when some of those rows are padded (as in the engine)."""
    n = tokens.shape[1]
    cache.select(None, start)
    length = buf.length
    offsets = start - length + 1 + torch.arange(n, device=tokens.device)      # columns after the buffer's last
    positions = buf.positions[index, length - 1].unsqueeze(1) + offsets
    mask = None
    if padded:
        mask = torch.cat([buf.mask[index, :length], buf.mask.new_ones(len(index), start - length + n)], dim=1)
    out = model(input_ids=tokens, position_ids=positions, attention_mask=mask, past_key_values=cache, use_cache=True,
                logits_to_keep=keep)
    return out.logits


@dataclass
class Collab:
    """Candidates = top-k tokens of each expert; each rolled out `rollout_tokens` greedy tokens by its expert and
    scored by the reward model (engine model `reward`); the best candidate is the token. Module docstring: budget
    and the cheap rule."""

    experts: list[int]
    reward: int
    eos_ids: set[int]
    top_k: int = 2
    rollout_tokens: int = 4
    budget: int = -1                    # rollout tokens per sample; -1 = no limit
    lookahead: ClassVar[bool] = True    # the engine passes the ActiveBatch

    @property
    def step_cost(self) -> int:
        """Rollout tokens one look-ahead step spends on a row."""
        return len(self.experts) * self.top_k * self.rollout_tokens

    def affordable(self, state: dict) -> bool:
        """Whether a row with this state may spend one more look-ahead step."""
        return self.budget < 0 or state.get("spent", 0) + self.step_cost <= self.budget

    def step(self, run: Run, batch: ActiveBatch) -> tuple[torch.Tensor, torch.Tensor]:
        states = [row.policy_state for row in batch.rows]
        # a row that has spent its budget needs only its winner; the others consult every expert
        closed = {b: s["winner"] for b, s in enumerate(states) if "winner" in s and not self.affordable(s)}
        open_rows = [b for b in range(len(states)) if b not in closed]
        choices = [closed.get(b, 0) for b in range(len(states))]
        device = batch.buf.ids.device
        parts: list[tuple[list[int], torch.Tensor]] = []                          # (rows, their logits)
        for e in sorted(set(closed.values())):
            rows = [b for b, w in closed.items() if w == e]
            parts.append((rows, run(self.experts[e], rows).logits[torch.tensor(rows, device=device)]))
        if open_rows:
            index = torch.tensor(open_rows, device=device)
            logits = torch.stack([run(e, open_rows).logits[index] for e in self.experts])   # [N, R, V]
            picked, decided = self.decide(run, batch, open_rows, logits)
            parts.append((open_rows, decided))
            for b, e in zip(open_rows, picked):
                choices[b] = e
        out = parts[0][1].new_empty(len(states), parts[0][1].shape[-1])
        for rows, logits in parts:
            out[torch.tensor(rows, device=device)] = logits
        return out, torch.tensor(choices, device=device)

    def decide(self, run: Run, batch: ActiveBatch, rows: list[int],
               logits: torch.Tensor) -> tuple[list[int], torch.Tensor]:
        """(expert per row, logits [R, V]) for buffer rows `rows` from every expert's logits [N, R, V]: rows whose
        candidates differ look ahead (while they can afford it), the others take the cheap rule."""
        candidates = logits.topk(self.top_k, dim=-1).indices                      # [N, R, k]
        confident = logits.log_softmax(-1).amax(-1).argmax(0).tolist()           # [R]: the most confident expert
        states = [batch.rows[b].policy_state for b in rows]
        picked = [s.get("winner", c) for s, c in zip(states, confident)]
        out = logits[torch.tensor(picked, device=logits.device), torch.arange(len(rows), device=logits.device)]
        flat = candidates.permute(1, 0, 2).flatten(1)                             # [R, N*k]
        differ = (flat != flat[:, :1]).any(1).tolist()
        look = [i for i in range(len(rows)) if differ[i] and self.affordable(states[i])]
        if not look:
            return picked, out
        scores = self.rollout_scores(run, batch, [rows[i] for i in look], candidates[:, look])   # [L, N*k]
        for i, j in zip(look, scores.argmax(1).tolist()):
            e, c = divmod(j, self.top_k)
            out[i] = torch.full_like(out[i], float("-inf")).index_fill_(0, candidates[e, i, c].view(1), 0.0)
            picked[i] = e
            states[i]["winner"], states[i]["spent"] = e, states[i].get("spent", 0) + self.step_cost
            batch.rows[rows[i]].cost += self.step_cost + len(self.experts) * self.top_k * (self.rollout_tokens + 1)
        return picked, out

    def rollout_scores(self, run: Run, batch: ActiveBatch, look: list[int], candidates: torch.Tensor) -> torch.Tensor:
        """Reward of prefix + candidate + greedy rollout for buffer rows `look` (`candidates` [N, R, k] of those
        rows): [R, N*k], expert-major per row."""
        buf, k, steps = batch.buf, self.top_k, self.rollout_tokens
        index = torch.tensor(look, device=candidates.device)
        rows_k = index.repeat_interleave(k)                                       # [R*k]: row-major, candidate-minor
        padded = any(buf.pads[r] for r in look)
        sequences = []
        for n, e in enumerate(self.experts):
            tokens = candidates[n].reshape(-1, 1)                                 # [R*k, 1]
            if steps:
                model = batch.models[e]
                cache = fork_cache(model, rows_k, buf.length, steps)
                for j in range(steps):
                    nxt = _forward(model.model, cache, buf, rows_k, padded, tokens[:, -1:], buf.length + j, 1)[:, -1]
                    tokens = torch.cat([tokens, nxt.argmax(-1, keepdim=True)], dim=1)
            sequences.append(tokens)
        tokens = torch.cat(sequences)                                             # [N*R*k, L+1]
        is_eos = torch.isin(tokens, torch.tensor(sorted(self.eos_ids), device=tokens.device))
        ends = torch.where(is_eos.any(1), is_eos.int().argmax(1), tokens.new_full((len(tokens),), steps))
        run(self.reward, look)                                                    # the reward model has the prefix
        reward = batch.models[self.reward]
        rows_all = rows_k.repeat(len(self.experts))
        cache = fork_cache(reward, rows_all, buf.length, steps + 1)
        scores = _forward(reward.model, cache, buf, rows_all, padded, tokens, buf.length, 0)[..., 0]   # [M, L+1]
        scores = scores[torch.arange(len(tokens), device=tokens.device), ends]
        return scores.view(len(self.experts), len(look), k).permute(1, 0, 2).flatten(1)
