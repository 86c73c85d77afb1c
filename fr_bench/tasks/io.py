"""Where a task's rows come from: a local JSON / JSONL / JSONL.gz file, or a Hugging Face Hub dataset.

`data` is a path when it exists on disk (or has a data-file suffix, so a typo fails loudly instead of going to the
Hub); anything else is taken as a Hub dataset name. Tests and offline runs always pass paths.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

DATA_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")


def is_local(data: str) -> bool:
    return Path(data).expanduser().exists() or data.endswith(DATA_SUFFIXES)


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSON array (or {"data"/"rows": [...]}) or JSON-lines file, gzipped or not."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"data file {path} does not exist; pass an existing JSON/JSONL(.gz) path or a Hub "
                                f"dataset name as `data`")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        text = fh.read()
    stripped = text.lstrip()
    if stripped.startswith("["):
        rows = json.loads(text)
    elif stripped.startswith("{") and path.name.endswith((".json", ".json.gz")):
        obj = json.loads(text)
        rows = obj.get("data", obj.get("rows")) if isinstance(obj, dict) else None
        if not isinstance(rows, list):
            raise ValueError(f"{path}: a .json file must hold a list of rows or {{'data': [...]}}")
    else:
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: not valid JSON ({e.msg}); each line must be one JSON object") from e
    bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
    if bad is not None:
        raise ValueError(f"{path}: row {bad} is a {type(rows[bad]).__name__}, expected a JSON object")
    return rows


def load_hub(name: str, config: str | None, split: str) -> list[dict[str, Any]]:
    from datasets import load_dataset

    return [dict(r) for r in load_dataset(name, config, split=split)]


def load_rows(data: str | None, hub_name: str, hub_config: str | None, split: str) -> list[dict[str, Any]]:
    """Rows from `data` (a path or Hub name) or, when None, from the task's default Hub dataset."""
    if data is not None and is_local(str(data)):
        return read_rows(data)
    name = hub_name if data is None else str(data)
    return load_hub(name, hub_config if name == hub_name else None, split)


def require_fields(rows: list[dict[str, Any]], fields: tuple[str, ...], task: str, source: str | None) -> None:
    """Fail early, naming the row and the missing field, instead of a KeyError deep inside scoring."""
    for i, row in enumerate(rows):
        missing = [f for f in fields if f not in row]
        if missing:
            raise ValueError(f"{task}: row {i} of {source or 'the Hub dataset'} lacks field(s) {missing}; "
                             f"{task} rows need {list(fields)}")
