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


def _forward(model: nn.Module, cache: RowCache, buf: TokenBuffer, index: torch.Tensor, tokens: torch.Tensor,
             start: int, keep: int) -> torch.Tensor:
    """Run `tokens` [M, n] at buffer columns [start, start + n) on the forked `cache` of buffer rows `index`."""
    n = tokens.shape[1]
    cache.select(None, start)
    length = buf.length
    positions = buf.positions[index, length - 1].unsqueeze(1) + 1 + (start - length) + torch.arange(n, device=tokens.device)
    mask = None
    if bool((buf.mask[index, :length] == 0).any()):
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

    def step(self, run: Run, batch: ActiveBatch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = torch.stack([run(e).logits for e in self.experts])              # [N, B, V]
        candidates = logits.topk(self.top_k, dim=-1).indices                      # [N, B, k]
        rows = range(len(batch.rows))
        confident = logits.log_softmax(-1).amax(-1).argmax(0).tolist()           # [B]: the most confident expert
        choices = [batch.rows[b].policy_state.get("winner", confident[b]) for b in rows]
        flat = candidates.permute(1, 0, 2).flatten(1)                             # [B, N*k]
        differ = (flat != flat[:, :1]).any(1).tolist()
        look = [b for b in rows if differ[b] and (self.budget < 0 or
                                                  batch.rows[b].policy_state.get("spent", 0) + self.step_cost <= self.budget)]
        index = torch.arange(len(batch.rows), device=logits.device)
        out = logits[torch.tensor(choices, device=logits.device), index]          # the cheap rule's logits
        if look:
            scores = self.rollout_scores(run, batch, look, candidates)          # [R, N*k], expert-major
            best = scores.argmax(1).tolist()
            for b, j in zip(look, best):
                e, c = divmod(j, self.top_k)
                token = candidates[e, b, c]
                out[b] = torch.full_like(out[b], float("-inf")).index_fill_(0, token.view(1), 0.0)
                choices[b] = e
                state = batch.rows[b].policy_state
                state["winner"], state["spent"] = e, state.get("spent", 0) + self.step_cost
                batch.rows[b].cost += self.step_cost + len(self.experts) * self.top_k * (self.rollout_tokens + 1)
        return out, torch.tensor(choices, device=logits.device)

    def rollout_scores(self, run: Run, batch: ActiveBatch, look: list[int], candidates: torch.Tensor) -> torch.Tensor:
        """Reward of prefix + candidate + greedy rollout for rows `look`: [R, N*k] (expert-major per row)."""
        buf, k, steps = batch.buf, self.top_k, self.rollout_tokens
        index = torch.tensor(look, device=candidates.device)
        rows_k = index.repeat_interleave(k)                                       # [R*k]: row-major, candidate-minor
        sequences = []
        for n, e in enumerate(self.experts):
            tokens = candidates[n, index].reshape(-1, 1)                          # [R*k, 1]
            if steps:
                model = batch.models[e]
                cache = fork_cache(model, rows_k, buf.length, steps)
                for j in range(steps):
                    nxt = _forward(model.model, cache, buf, rows_k, tokens[:, -1:], buf.length + j, 1)[:, -1]
                    tokens = torch.cat([tokens, nxt.argmax(-1, keepdim=True)], dim=1)
            sequences.append(tokens)
        tokens = torch.cat(sequences)                                             # [N*R*k, L+1]
        is_eos = torch.isin(tokens, torch.tensor(sorted(self.eos_ids), device=tokens.device))
        ends = torch.where(is_eos.any(1), is_eos.int().argmax(1), tokens.new_full((len(tokens),), steps))
        run(self.reward, look)                                                    # the reward model has the prefix
        reward = batch.models[self.reward]
        rows_all = rows_k.repeat(len(self.experts))
        cache = fork_cache(reward, rows_all, buf.length, steps + 1)
        scores = _forward(reward.model, cache, buf, rows_all, tokens, buf.length, 0)[..., 0]   # [M, L+1]
        scores = scores[torch.arange(len(tokens), device=tokens.device), ends]
        return scores.view(len(self.experts), len(look), k).permute(1, 0, 2).flatten(1)
