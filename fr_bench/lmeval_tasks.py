"""A sweep world's evaluation tasks (the micro tasks, and any other task of the world) as lm-eval task YAMLs over
local JSON data, so `lm-eval --include_path DIR --tasks micro_math` scores them as the sweep does.

Each task becomes `DIR/<name>.yaml` plus `DIR/<name>.jsonl`. A data row holds the fr_bench task name, the user
message the sweep sends (`Task.user_message`) and the fr_bench row itself (as JSON text, so `datasets` cannot
re-type its nested fields). lm-eval then sends that message, with `--apply_chat_template` through the tokenizer's
chat template as the sweep does, stops at the task's stop strings after the sweep's `max_new_tokens`, and scores
each output with fr_bench's own scorer (`process_results` below); every metric aggregates as the sweep's do
(a ratio of sums, so IFEval's instruction-level accuracy averages over instructions). Code tasks set
`unsafe_code: true`: lm-eval runs them only with `--confirm_run_unsafe_code`, and fr_bench's sandbox runs the code.
"""
from __future__ import annotations

import argparse
import json
import sys
from functools import cache
from pathlib import Path
from typing import Any, Sequence

from .cache import atomic_write_text
from .world import World

ROW_FIELD, TASK_FIELD, PROMPT_FIELD = "fr_bench_row", "fr_bench_task", "fr_bench_prompt"


@cache
def _task(name: str) -> Any:
    from .tasks import get_task

    return get_task(name)


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, Any]:
    """lm-eval's per-document hook: the fr_bench scorer's metrics of this output (a list for per-part metrics)."""
    (result,) = _task(doc[TASK_FIELD]).score([json.loads(doc[ROW_FIELD])], [results[0]])
    return dict(result.metrics)


def ratio_of_sums(items: list[float | list[float]]) -> float:
    """The sweep's aggregation (`fr_bench.scoring.metrics`): a list-valued item counts each of its parts."""
    values = [float(v) for item in items for v in (item if isinstance(item, (list, tuple)) else [item])]
    return sum(values) / len(values) if values else float("nan")


def task_yaml(name: str, task: Any, data_file: Path) -> str:
    """One lm-eval task config (JSON scalars are valid YAML; `!function` needs the hand-written form)."""
    q = json.dumps
    metrics = "".join(f"  - metric: {m}\n    aggregation: !function fr_bench.lmeval_tasks.ratio_of_sums\n"
                      f"    higher_is_better: true\n" for m in task.metric_names)
    return (f"# fr_bench task '{task.name}' ({task.domain}) written by `python -m fr_bench.lmeval export-tasks`\n"
            f"task: {q(name)}\n"
            f"dataset_path: json\n"
            f"dataset_kwargs:\n  data_files:\n    test: {q(str(data_file.resolve()))}\n"
            f"test_split: test\n"
            f"output_type: generate_until\n"
            f"num_fewshot: 0\n"
            f"doc_to_text: {PROMPT_FIELD}\n"
            f"doc_to_target: 0\n"
            f"generation_kwargs:\n  until: {q(list(task.stop_sequences))}\n"
            f"  max_gen_toks: {task.max_new_tokens}\n  do_sample: false\n  temperature: 0.0\n"
            f"process_results: !function fr_bench.lmeval_tasks.process_results\n"
            f"metric_list:\n{metrics}"
            + ("unsafe_code: true\n" if task.domain == "code" else "")
            + f"metadata:\n  version: 1.0\n  fr_bench_task: {q(task.name)}\n")


def export_tasks(world: World, out_dir: Path) -> list[str]:
    """Write every task of `world` as `out_dir/<name>.yaml` + `.jsonl`; returns the task names."""
    from .tasks import get_task

    out_dir.mkdir(parents=True, exist_ok=True)
    for name, spec in world.tasks.items():
        task = get_task(spec.task, data=spec.data, limit=spec.limit, max_new_tokens=spec.max_new_tokens)
        rows = task.load()
        if not rows:
            raise ValueError(f"task '{name}' ({spec.task}, data={spec.data}) has no rows to export")
        data_file = out_dir / f"{name}.jsonl"
        atomic_write_text(data_file, "".join(
            json.dumps({TASK_FIELD: spec.task, PROMPT_FIELD: task.user_message(r), ROW_FIELD: json.dumps(r)}) + "\n"
            for r in rows))
        atomic_write_text(out_dir / f"{name}.yaml", task_yaml(name, task, data_file))
    return list(world.tasks)


def export_tasks_main(argv: Sequence[str] | None = None) -> int:
    """`python -m fr_bench.lmeval export-tasks DIR [--sweep YAML] [key=value ...]`"""
    from .config import ConfigError, load_config
    from .sweep.config import SweepConfig
    from .sweep.worlds import resolve_world

    p = argparse.ArgumentParser(prog="python -m fr_bench.lmeval export-tasks",
                                description="Write a sweep world's evaluation tasks (the micro tasks) as lm-eval "
                                            "task YAMLs over local JSON data, for `--include_path DIR`.")
    p.add_argument("out_dir", help="folder for the task YAMLs and their data (created)")
    p.add_argument("--sweep", default="experiments/ablations.yaml",
                   help="sweep YAML whose world's tasks to export (built or found in the cache first)")
    p.add_argument("overrides", nargs="*", help="key=value sweep overrides, e.g. limit=20")
    args = p.parse_intermixed_args(argv)
    try:
        cfg = load_config(SweepConfig, args.sweep, args.overrides)
        world = resolve_world(cfg)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if cfg.limit is not None:
        from .world import TaskSpec

        world.tasks = {n: TaskSpec(s.task, s.data, min(x for x in (s.limit, cfg.limit) if x is not None),
                                   s.max_new_tokens) for n, s in world.tasks.items()}
    names = export_tasks(world, Path(args.out_dir))
    print(f"wrote {len(names)} lm-eval task(s) to {args.out_dir}: {', '.join(names)}\n"
          f"score them: python -m fr_bench.lmeval --model fr_bench --model_args sweep={args.sweep},method=fusionroute"
          f" --include_path {args.out_dir} --tasks {','.join(names)} --apply_chat_template --batch_size "
          f"{cfg.batch_size} --confirm_run_unsafe_code")
    return 0
