"""Content-addressed artifact cache and atomic writes.

An artifact lives at `$FR_BENCH_CACHE/<kind>/<hash>/`, where the hash covers everything that produced it. A directory
is built under a temporary name and renamed into place only when complete, so an interrupted build leaves nothing a
later run would trust.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Iterator

from .config import to_dict

COMPLETE_MARKER = ".complete"


def cache_root() -> Path:
    return Path(os.environ.get("FR_BENCH_CACHE", Path.home() / ".cache" / "fr_bench")).expanduser()


def _canonical(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        return to_dict(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    return obj


def config_hash(*parts: Any, length: int = 16) -> str:
    """Stable hash of JSON-able parts (dataclasses, dicts, paths, scalars)."""
    blob = json.dumps([_canonical(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_jsonl(path: str | Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, default=str) + "\n" for r in rows))


def is_complete(directory: str | Path) -> bool:
    return (Path(directory) / COMPLETE_MARKER).is_file()


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a scratch directory; on success it becomes `final` (marked complete), on failure it is removed."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    try:
        yield tmp
        (tmp / COMPLETE_MARKER).write_text("ok\n")
        if final.exists():  # an incomplete leftover, or a concurrent winner: keep a complete one
            if is_complete(final):
                shutil.rmtree(tmp)
                return
            shutil.rmtree(final)
        try:
            os.replace(tmp, final)
        except OSError:  # another process (a sweep worker) renamed its copy into place since the check above
            if not is_complete(final):
                raise
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def artifact_dir(kind: str, *parts: Any) -> Path:
    """Where the artifact of `kind` produced by `parts` lives (complete or not yet built)."""
    return cache_root() / kind / config_hash(*parts)
