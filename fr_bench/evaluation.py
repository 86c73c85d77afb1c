"""One evaluation function: a loaded method decodes a task's prompts and the task's own scorer scores them.

The sweep's cells (`fr_bench.sweep.cells`) and the micro world's specialisation table (`fr_bench.micro.evaluate`)
both call `evaluate_task`, so a number in the table and the same model's sweep cell come from one code path.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .types import Method
from .world import TaskSpec


@dataclass
class TaskRun:
    """A method's scores on one task: `result` (domain, n, metrics, cost, wall time) and one row per sample."""

    result: dict[str, Any]
    samples: list[dict[str, Any]]


def evaluate_task(method: Method, tokenizer: Any, name: str, spec: TaskSpec, seed: int) -> TaskRun:
    """Decode every prompt of task `name` (its `spec`) with `method`, torch seeded with `seed`, and score the outputs.

    A sample row carries the scorer's fields plus the user message, the output, the routing choices and decoded
    tokens of token-level methods (None otherwise) and the tokens it cost."""
    import torch

    from .tasks import get_task

    task = get_task(spec.task, data=spec.data, limit=spec.limit, max_new_tokens=spec.max_new_tokens)
    rows = task.load()
    if not rows:
        raise ValueError(f"task '{name}' ({spec.task}, data={spec.data}) has no rows; check tasks.{name}.data")
    prompts = [task.prompt(r, tokenizer) for r in rows]
    torch.manual_seed(seed)
    start = time.perf_counter()
    gens = method.generate(prompts, max_new_tokens=task.max_new_tokens, stop=list(task.stop_sequences))
    wall = time.perf_counter() - start
    results = task.score(rows, [g.text for g in gens])
    metrics = task.aggregate(results)
    samples = []
    for row, gen, res in zip(rows, gens, results):
        tokens = [tokenizer.decode([t]) for t in gen.token_ids] if gen.expert_choices is not None else None
        samples.append({**res.to_json(), "prompt": task.user_message(row), "output": gen.text,
                        "expert_choices": gen.expert_choices, "tokens": tokens, "cost_tokens": gen.cost_tokens})
    result = {"task": name, "domain": task.domain, "n": len(rows), "primary_metric": task.primary_metric,
              "primary": metrics[task.primary_metric], "metrics": metrics,
              "cost_tokens": sum(g.cost_tokens for g in gens), "wall_s": round(wall, 3)}
    return TaskRun(result, samples)
