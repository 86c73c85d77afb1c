"""A KV cache in which each batch row has its own progress, so a model can run for only some rows of a batch.

Token-level routing at batch > 1 sends different rows to different experts. With one cache length per model (HF's
`DynamicCache`), an expert that one row picks must catch up *every* row, so at batch 8 each expert ends up running
nearly the whole batch's text (3.9x a single model's positions at 1 % switching). Here an expert runs only the rows
that picked it: exact per-row logits need only those rows' prefixes.

Storage is indexed by token-buffer column: layer l holds keys and values `[B, H, capacity, D]`, and a forward for
rows `R` from column `start` writes columns `[start, end)` of those rows and attends to columns `[0, end)`. Which
columns of a row hold valid states is the engine's bookkeeping (`CachedModel.seen`); a forward must start at or
before the first column any of its rows lacks (re-running columns a row already has just rewrites them).

Sliding-window layers (Gemma-2) keep their full history here: the window is applied by the attention mask, which HF
builds from absolute columns (`get_mask_sizes` reports offset 0), so the same keys are attended as with HF's
`DynamicSlidingWindowLayer`, at the memory of a full layer.
"""
from __future__ import annotations

import torch
from transformers.cache_utils import Cache, CacheLayerMixin


class RowLayer(CacheLayerMixin):
    """One attention layer's keys and values for every batch row, written at the cache's current rows and start."""

    is_sliding = False

    def __init__(self, cache: "RowCache") -> None:
        super().__init__()
        self.cache = cache

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        _, heads, _, dim = key_states.shape
        shape = (self.cache.batch, heads, self.cache.initial_capacity, dim)
        self.keys = key_states.new_zeros(shape)
        self.values = value_states.new_zeros((*shape[:3], value_states.shape[-1]))
        self.dtype, self.device = key_states.dtype, key_states.device
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args,
               **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        start, rows = self.cache.start, self.cache.rows
        end = start + key_states.shape[-2]
        if end > self.keys.shape[2]:
            self._grow(end)
        if rows is None:                       # every row: in-place writes, a view for attention (no copy)
            self.keys[:, :, start:end] = key_states
            self.values[:, :, start:end] = value_states
            return self.keys[:, :, :end], self.values[:, :, :end]
        self.keys[rows, :, start:end] = key_states
        self.values[rows, :, start:end] = value_states
        return self.keys[rows, :, :end], self.values[rows, :, :end]

    def _grow(self, needed: int) -> None:
        """Double the capacity (at least to `needed`, at most to the cache's limit): amortised O(1) copies."""
        capacity = min(max(needed, 2 * self.keys.shape[2]), max(self.cache.max_capacity, needed))
        for name in ("keys", "values"):
            old = getattr(self, name)
            new = old.new_zeros((*old.shape[:2], capacity, old.shape[3]))
            new[:, :, :old.shape[2]] = old
            setattr(self, name, new)

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.cache.start + query_length, 0

    def get_seq_length(self) -> int:
        return self.cache.start

    def get_max_length(self) -> int:
        return -1

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            self.keys, self.values = self.keys[indices], self.values[indices]


class RowCache(Cache):
    """Per-row KV cache for `batch` rows of a model with `layers` attention layers. Before each forward the engine
    calls `select(rows, start)`: the rows it runs (None = all, in order) and the buffer column it starts at."""

    def __init__(self, layers: int, batch: int, initial_capacity: int, max_capacity: int) -> None:
        self.batch, self.initial_capacity, self.max_capacity = batch, initial_capacity, max_capacity
        self.rows: torch.Tensor | None = None
        self.start = 0
        super().__init__(layers=[RowLayer(self) for _ in range(layers)])

    def select(self, rows: torch.Tensor | None, start: int) -> None:
        self.rows, self.start = rows, start

    def keep(self, indices: torch.Tensor) -> None:
        """Keep only batch rows `indices` (rows that finished leave the batch)."""
        for layer in self.layers:
            layer.batch_select_indices(indices)
        self.batch = len(indices)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for layer in self.layers if layer.is_initialized
                   for t in (layer.keys, layer.values))
