"""(prompt, response) JSONL rows -> padded causal-LM batches with the prompt masked out of the loss.

Rows are encoded once through `fr_bench.chat.encode_example`, the same path evaluation prompts take. Batches are
grouped by length (shuffled within a seeded "mega-batch", then sorted), so a CPU step spends little time on padding.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

import torch
from torch.utils.data import Dataset, Sampler

from ..chat import encode_example

PAIRS_FILE = "pairs.jsonl"   # the file a preference-pairs folder holds (pref_pairs artifact, self-sampled pairs)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_pairs(paths: Sequence[str | Path], prompt_key: str = "prompt",
               response_key: str = "response") -> list[dict[str, str]]:
    """Rows of every JSONL file, checked to hold the prompt and response fields."""
    rows: list[dict[str, str]] = []
    for path in paths:
        for i, row in enumerate(read_jsonl(path)):
            if prompt_key not in row or response_key not in row:
                raise KeyError(f"{path} line {i + 1} has no '{prompt_key}'/'{response_key}' field; SFT rows need "
                               f"both (got keys {sorted(row)}).")
            rows.append({"prompt": row[prompt_key], "response": row[response_key]})
    return rows


class SignalRows(Protocol):
    """Per-example expert signals aligned with a dataset's examples (`expert_signals.SignalTable`)."""

    def __len__(self) -> int: ...

    def example(self, i: int) -> dict[str, torch.Tensor]: ...


class SFTDataset(Dataset):
    """The one SFT dataset: encoded (prompt, response) examples, each with its slice of the expert signals when
    `signals` is given (router SFT) and without (plain LM training: the micro world's LMs, the fine-tuned baseline)."""

    def __init__(self, examples: Sequence[dict[str, Any]], signals: SignalRows | None = None) -> None:
        if signals is not None and len(signals) != len(examples):
            raise ValueError(f"signal table has {len(signals)} examples, data has {len(examples)}.")
        self.examples, self.signals = examples, signals

    @classmethod
    def from_rows(cls, rows: Sequence[dict[str, Any]], tokenizer: Any, max_length: int | None = None) -> "SFTDataset":
        """Rows encoded as evaluation prompts are; a row's optional `spans` [(text, trained)] masks parts of its
        response (`fr_bench.chat.encode_example`)."""
        return cls([encode_example(tokenizer, r["prompt"], r["response"], max_length, r.get("spans")) for r in rows])

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = {"input_ids": self.examples[i]["input_ids"], "labels": self.examples[i]["labels"]}
        if self.signals is not None:
            item.update(self.signals.example(i))
        return item

    def lengths(self) -> list[int]:
        return [len(e["input_ids"]) for e in self.examples]


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Seeded shuffle, then batches of similar length inside windows of `mega` batches; a new order every epoch."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, mega: int = 32,
                 shuffle: bool = True) -> None:
        self.lengths, self.batch_size, self.seed = list(lengths), batch_size, seed
        self.mega, self.shuffle = mega, shuffle
        self.epoch = 0

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        order = list(range(len(self.lengths)))
        if not self.shuffle:
            yield from (order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size))
            return
        rng = random.Random(self.seed * 100_003 + self.epoch)
        self.epoch += 1
        rng.shuffle(order)
        window = self.batch_size * self.mega
        batches: list[list[int]] = []
        for start in range(0, len(order), window):
            chunk = sorted(order[start:start + window], key=lambda i: self.lengths[i])
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        rng.shuffle(batches)
        yield from batches


def collate(examples: Sequence[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example: input_ids (pad_id), labels (-100), attention_mask (0)."""
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        labels[i, :n] = torch.tensor(e["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def right_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded token ids [B, T] and attention mask [B, T] of plain id lists (no labels: scoring, not training)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(list(s), dtype=torch.long)
        mask[i, :len(s)] = 1
    return ids, mask
