"""The micro world's data files: task rows per domain and split (in each benchmark's schema) and SFT rows.

Everything is generated in memory first and the artifact is keyed by a hash of the bytes, so a change anywhere
(config, generators, a task's prompt format) gives a new data hash and rebuilds what depends on it, and nothing
else does.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..cache import atomic_dir, cache_root, is_complete
from ..tasks import get_task
from .config import MicroDataConfig
from .generators import DOMAINS, GENERATORS, Sample, generate_splits

SPLITS = ("train", "router", "validation", "test")
# MBPP's loader keeps only task_id 11-510 when a file mixes ids inside and outside that range: ours stay outside.
_ID_OFFSET = {"test": 100_000, "validation": 200_000, "train": 300_000, "router": 400_000}


def task_name(domain: str) -> str:
    return GENERATORS[domain][0]


def _with_id(domain: str, split: str, i: int, row: dict[str, Any]) -> dict[str, Any]:
    """The row with the id field its schema has (GSM8K rows have none: the task numbers them)."""
    if domain == "code":
        return {"task_id": _ID_OFFSET[split] + i, **row}
    if domain == "if":
        return {"key": _ID_OFFSET[split] + i, **row}
    if domain in ("general", "mixed"):
        return {"id": f"{split}-{i}", **row}
    return dict(row)


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, sort_keys=False) + "\n" for r in rows)


def render(cfg: MicroDataConfig) -> dict[str, str]:
    """Relative path -> file text of the whole data artifact.

    `{domain}/{split}.jsonl`: task rows. `sft/{domain}/{split}.jsonl`: {prompt, response, domain} with prompt =
    the task's `user_message(row)`. `pref/{domain}.jsonl`: the router split's task rows plus their gold `response`.
    """
    files: dict[str, str] = {}
    for domain in DOMAINS:
        splits = generate_splits(domain, cfg.seed, cfg.n_test, cfg.n_validation, cfg.n_train + cfg.n_router)
        parts: dict[str, list[Sample]] = {"train": splits["train"][: cfg.n_train],
                                           "router": splits["train"][cfg.n_train:],
                                           "validation": splits["validation"], "test": splits["test"]}
        task = get_task(task_name(domain))
        for split, samples in parts.items():
            rows = [_with_id(domain, split, i, s.row) for i, s in enumerate(samples)]
            files[f"{domain}/{split}.jsonl"] = _jsonl(rows)
            files[f"sft/{domain}/{split}.jsonl"] = _jsonl(
                [{"prompt": task.user_message(r), "response": s.response, "domain": domain,
                  **({"segments": r["segments"]} if "segments" in r else {})} for r, s in zip(rows, samples)])
            if split == "router":
                files[f"pref/{domain}.jsonl"] = _jsonl([{**r, "response": s.response} for r, s in zip(rows, samples)])
    return files


def content_hash(files: dict[str, str], length: int = 16) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    return h.hexdigest()[:length]


def build_data(cfg: MicroDataConfig) -> tuple[Path, str, bool]:
    """(directory, content hash, whether it was written now) of the data artifact for `cfg`."""
    files = render(cfg)
    digest = content_hash(files)
    final = cache_root() / "micro_data" / digest
    if is_complete(final):
        return final, digest, False
    with atomic_dir(final) as tmp:
        for name, text in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(text)
    return final, digest, True
