"""Evaluate cells: one method (loaded once) on its pending tasks for one seed; each finished cell is written
atomically under `$FR_BENCH_CACHE/cells/<key>/`, so a killed sweep loses at most the cell in flight."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cache import atomic_dir, cache_root, is_complete
from ..evaluation import evaluate_task
from ..world import TaskSpec, World
from .executor import prepare_task_process


def cell_dir(key: str) -> Path:
    return cache_root() / "cells" / key


def cell_done(key: str) -> bool:
    return is_complete(cell_dir(key))


def read_cell(key: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    d = cell_dir(key)
    result = json.loads((d / "result.json").read_text())
    samples = [json.loads(line) for line in (d / "samples.jsonl").read_text().splitlines() if line]
    return result, samples


@dataclass
class Job:
    """What one executor task runs: a method for one seed on a list of (cell key, task name, TaskSpec)."""

    world: World
    method_display: str
    method: str
    options: dict[str, Any]
    seed: int
    artifacts: dict[str, str]          # artifact name -> folder
    cells: list[tuple[str, str, Any]]  # (cell key, task display name, TaskSpec)
    batch_size: int
    cache: str                         # FR_BENCH_CACHE to use (remote workers)
    threads: int = 0                   # torch intra-op threads; 0 = leave torch's default


def load_method(job: Job) -> Any:
    """The job's method, loaded from its built artifacts (also how `fr_bench.lmeval` loads a sweep's method)."""
    import torch

    from ..methods import get_method_class

    prepare_task_process(job.cache, job.threads)
    torch.manual_seed(job.seed)
    options = {"batch_size": job.batch_size, **job.options}
    method = get_method_class(job.method)(job.world, options, job.seed)
    method.load({k: Path(v) for k, v in job.artifacts.items()})
    return method


def run_job(job: Job) -> list[str]:
    """Run a job and return the keys of the cells it finished."""
    from transformers import AutoTokenizer

    method = load_method(job)
    tokenizer = AutoTokenizer.from_pretrained(job.world.tokenizer)
    done = []
    for key, task_name, spec in job.cells:
        if cell_done(key):
            done.append(key)
            continue
        try:
            _run_cell(job, method, tokenizer, key, task_name, spec)
        except Exception as exc:
            exc.add_note(f"while evaluating cell {job.method_display}/{task_name}/seed{job.seed}")
            raise
        done.append(key)
    return done


def _run_cell(job: Job, method: Any, tokenizer: Any, key: str, task_name: str, spec: TaskSpec) -> None:
    run = evaluate_task(method, tokenizer, task_name, spec, job.seed)
    result = {"method": job.method_display, **run.result, "seed": job.seed}
    with atomic_dir(cell_dir(key)) as tmp:
        (tmp / "samples.jsonl").write_text("".join(json.dumps(s, default=str) + "\n" for s in run.samples))
        (tmp / "result.json").write_text(json.dumps(result, indent=2, default=str))
