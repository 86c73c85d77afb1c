"""Greedy outputs of one micro-world model on every task, for the specialisation table.

A model decodes through the registered `single_model` method (the decode engine's `SingleModel` policy) and each task
is evaluated by `fr_bench.evaluation.evaluate_task`, the function behind every sweep cell, so the table and the
sweep's `expert_*` and `base` cells come from one decoding and scoring path.
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
    per-sample rows (the sweep's cell sample rows) go to `samples_<name>.jsonl` there.
    """
    from ..cache import atomic_write_jsonl
    from ..evaluation import evaluate_task
    from ..methods import get_method_class

    method = get_method_class("single_model")(world, {"model": model, "batch_size": batch_size})
    method.load({})
    summary: dict[str, dict[str, Any]] = {}
    for name, spec in world.tasks.items():
        run = evaluate_task(method, method.engine.tokenizer, name, spec, seed=0)
        summary[name] = {"task": spec.task, "primary": run.result["primary"], "metrics": run.result["metrics"]}
        if out_dir is not None:
            atomic_write_jsonl(Path(out_dir) / f"samples_{name}.jsonl", run.samples)
    return summary
