"""Greedy outputs of one micro-world model on every task, for the specialisation table.

A model decodes through the registered `single_model` method (the decode engine's `SingleModel` policy), exactly as
the sweep's `expert_*` and `base` cells do, so the table and the sweep's numbers come from one decoding path.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..world import World


def evaluate_model(world: World, model: str, batch_size: int,
                   out_dir: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Greedy outputs of `model` (`base` or an expert name of `world`) on every task of `world`, scored by the task's
    own scorer.

    Returns {task display name: {"task", "primary": value, "metrics": all aggregate metrics}}; with `out_dir`,
    per-sample outputs and scores go to `samples_<name>.jsonl` there.
    """
    from ..cache import atomic_write_jsonl
    from ..methods import get_method_class
    from ..tasks import get_task

    method = get_method_class("single_model")(world, {"model": model, "batch_size": batch_size})
    method.load({})
    tokenizer = method.engine.tokenizer
    summary: dict[str, dict[str, Any]] = {}
    for name, spec in world.tasks.items():
        task = get_task(spec.task, data=spec.data, limit=spec.limit, max_new_tokens=spec.max_new_tokens)
        rows = task.load()
        generations = method.generate([task.prompt(r, tokenizer) for r in rows], task.max_new_tokens,
                                      list(task.stop_sequences))
        outputs = [g.text for g in generations]
        results = task.score(rows, outputs)
        metrics = task.aggregate(results)
        summary[name] = {"task": spec.task, "primary": metrics[task.primary_metric], "metrics": metrics}
        if out_dir is not None:
            atomic_write_jsonl(Path(out_dir) / f"samples_{name}.jsonl",
                               [{**r.to_json(), "output": o} for r, o in zip(results, outputs)])
    return summary
