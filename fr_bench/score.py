"""Score saved model outputs: `python -m fr_bench.score --task gsm8k --predictions preds.jsonl [--out m.json]`.

Each predictions line is {"id": ..., "output": "<raw model text>"}; ids are the task's row ids (GSM8K: 0-based row
index, HumanEval/MBPP: task_id, IFEval: key, MATH-500: unique_id). Only the rows present are scored; an id may repeat
(several samples of one problem, for pass@k). The metrics are printed as one JSON object on the last stdout line;
`--out m.json` also writes them there and the per-sample results to `m.samples.jsonl`.
Bad input (malformed line, missing field, unknown id) is reported with its line number before anything is scored,
with exit code 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from .cache import atomic_write_json, atomic_write_jsonl
from .tasks import get_task, task_names

class InputError(ValueError):
    """Problems with the user's files: reported plainly, exit code 2."""


def read_predictions(path: str | Path) -> list[tuple[int, str, str]]:
    """(line number, id, output) for every non-empty line; raises InputError naming the first bad line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--predictions {path}: no such file")
    preds = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{n}: not valid JSON ({e.msg}); each line must be one JSON object like "
                                 f'{{"id": "0", "output": "..."}}') from e
            if not isinstance(obj, dict) or "id" not in obj or "output" not in obj:
                raise InputError(f"{path}:{n}: needs the keys 'id' and 'output'; got "
                                 f"{sorted(obj) if isinstance(obj, dict) else type(obj).__name__}")
            if not isinstance(obj["output"], str) or isinstance(obj["id"], (dict, list, bool)) or obj["id"] is None:
                raise InputError(f"{path}:{n}: 'output' must be a string and 'id' a string or integer")
            preds.append((n, str(obj["id"]), obj["output"]))
    if not preds:
        raise InputError(f"{path}: no predictions (the file is empty)")
    return preds


def match_rows(preds: list[tuple[int, str, str]], rows: Sequence[dict[str, Any]], task: str,
               predictions: str | Path) -> list[dict[str, Any]]:
    by_id = {r["id"]: r for r in rows}
    unknown = [(n, i) for n, i, _ in preds if i not in by_id]
    if unknown:
        shown = ", ".join(f"line {n}: id {i!r}" for n, i in unknown[:5])
        more = f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""
        examples = ", ".join(repr(r["id"]) for r in list(rows)[:3])
        raise InputError(f"{predictions}: {len(unknown)} id(s) not in the {task} data: {shown}{more}. Ids must be "
                         f"the task's row ids (e.g. {examples}); check --task and --data")
    return [by_id[i] for _, i, _ in preds]


def score_file(task_name: str, predictions: str | Path, data: str | None = None,
               task_kwargs: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(metrics, per-sample records) for a predictions file; raises InputError before scoring on bad input."""
    preds = read_predictions(predictions)
    try:
        task = get_task(task_name, data=data, **(task_kwargs or {}))
        all_rows = task.load()
    except (ValueError, FileNotFoundError) as e:
        raise InputError(f"--data: {e}") from e
    rows = match_rows(preds, all_rows, task_name, predictions)
    results = task.score(rows, [out for _, _, out in preds])
    metrics: dict[str, Any] = {"task": task_name, **task.aggregate(results)}
    return metrics, [r.to_json() for r in results]


def samples_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".samples.jsonl")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fr_bench.score", description=__doc__.split("\n")[0])
    parser.add_argument("--task", required=True, choices=task_names())
    parser.add_argument("--predictions", required=True, help="JSONL of {'id', 'output'} lines")
    parser.add_argument("--data", default=None, help="local JSON/JSONL(.gz) file or Hub name (default: the Hub)")
    parser.add_argument("--out", default=None, help="metrics JSON path; per-sample results go to <stem>.samples.jsonl")
    parser.add_argument("--split", default=None, choices=("auto", "test", "all"), help="mbpp only: see tasks/mbpp.py")
    parser.add_argument("--timeout", type=float, default=None, help="code tasks: seconds per program")
    parser.add_argument("--workers", type=int, default=None, help="code tasks: parallel programs (default: CPUs)")
    args = parser.parse_args(argv)

    kwargs: dict[str, Any] = {}
    if args.split is not None:
        if args.task != "mbpp":
            parser.error("--split applies to --task mbpp only")
        kwargs["split"] = args.split
    if args.timeout is not None or args.workers is not None:
        if args.task not in ("mbpp", "humaneval"):
            parser.error("--timeout/--workers apply to the code tasks (mbpp, humaneval) only")
        from .scoring.sandbox import SandboxConfig

        kwargs["sandbox"] = SandboxConfig(**({"timeout_s": args.timeout} if args.timeout is not None else {}),
                                          workers=args.workers)
    try:
        metrics, samples = score_file(args.task, args.predictions, args.data, kwargs)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.out:
        atomic_write_jsonl(samples_path(args.out), samples)
        atomic_write_json(args.out, metrics)
    print(json.dumps(metrics, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
