"""Why a cached result is stale: the code each finished artifact and cell was computed with, by its base key.

Keys include a fingerprint of the code (`fr_bench.codegraph.Fingerprinter`), so an edit gives new keys and the old
results are simply not found. To say *why* something must be recomputed, every finished item also leaves a record
under `$FR_BENCH_CACHE/code_index/<base key>.json` (the base key leaves code out, so it survives edits): its key,
its code fingerprint and its dependencies' keys. `--dry-run` compares the plan with those records.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from ..cache import atomic_write_json, cache_root, is_complete
from ..codegraph import code_changes
from .cells import cell_dir
from .plan import ArtifactNode, Cell, Plan


def _record_path(base_key: str) -> Path:
    return cache_root() / "code_index" / f"{base_key}.json"


def _items(plan: Plan) -> Iterable[tuple[ArtifactNode | Cell, Path, dict[str, str]]]:
    from .run import artifact_path

    for node in plan.artifacts:
        yield node, artifact_path(node.key), node.deps
    for cell in plan.cells:
        yield cell, cell_dir(cell.key), cell.artifacts


def record(plan: Plan) -> None:
    """Write the record of every finished item of the plan (cheap; rewritten only when it changed)."""
    for item, path, deps in _items(plan):
        if not is_complete(path):
            continue
        entry = {"key": item.key, "code": item.code, "deps": deps}
        target = _record_path(item.base_key)
        if not target.is_file() or json.loads(target.read_text()) != entry:
            atomic_write_json(target, entry)


def stale_reasons(plan: Plan) -> dict[str, str]:
    """{label: why} for every item that must be (re)computed: "new", "code changed: <modules>", or
    "<dependency> changed" when only something upstream differs."""
    labels = {n.key: n.label for n in plan.artifacts}
    reasons: dict[str, str] = {}
    for item, path, deps in _items(plan):
        if is_complete(path) or item.label in reasons:
            continue
        target = _record_path(item.base_key)
        if not target.is_file():
            reasons[item.label] = "new"
            continue
        old = json.loads(target.read_text())
        changed = code_changes(old["code"], item.code)
        upstream = sorted(labels.get(k, name) for name, k in deps.items() if old["deps"].get(name) != k)
        parts = ([f"code changed: {', '.join(changed)}"] if changed else []) + \
                ([f"upstream changed: {', '.join(upstream)}"] if upstream else [])
        reasons[item.label] = "; ".join(parts) or "not cached (was deleted, or --force)"
    return reasons


def describe_stale(plan: Plan) -> str:
    """The dry run's summary: stale items grouped by reason."""
    by_reason: dict[str, list[str]] = {}
    for label, why in stale_reasons(plan).items():
        by_reason.setdefault(why, []).append(label)
    lines = []
    for why, items in sorted(by_reason.items(), key=lambda kv: -len(kv[1])):
        shown = ", ".join(items[:6]) + (f", ... ({len(items)} in all)" if len(items) > 6 else "")
        lines.append(f"  {why}: {shown}")
    return "\n".join(lines)
