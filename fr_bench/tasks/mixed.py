"""Mixed-domain rows (the micro world's `micro_mixed`): one response that must pass several benchmarks' checks at once.

A row names its checks under `checks`, each in the schema of the task that runs it: `gsm8k` {answer} (strict
extraction of "#### n"), `mbpp` {code, test_list, test_imports} (the asserts in the sandbox), `ifeval`
{instruction_id_list, kwargs} (IFEval's checkers on the whole response). Each check is that task's own `score` on
the same output; a row is correct only when every check holds. The code check runs the first top-level function of
the output (its `def` line and the indented lines under it), so text before or after the function does not make it
a syntax error.
"""
from __future__ import annotations

from typing import Any, Sequence

from ..scoring.sandbox import SandboxConfig
from . import register_task
from .base import SampleResult, Task
from .gsm8k import GSM8K
from .ifeval import IFEval
from .io import read_rows, require_fields
from .mbpp import MBPP

CHECKS = ("gsm8k", "mbpp", "ifeval")


def function_block(text: str) -> str:
    """The first `def` line of `text` and the indented (or blank) lines after it; the whole text if none."""
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith("def ")), None)
    if start is None:
        return text
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end][0].isspace()):
        end += 1
    return "\n".join(lines[start:end]).rstrip() + "\n"


@register_task("mixed")
class Mixed(Task):
    domain = "mixed"
    metric_names = ("all_checks", "check_acc")
    primary_metric = "all_checks"

    def __init__(self, *args: Any, sandbox: SandboxConfig | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sandbox = sandbox

    def load(self) -> list[dict[str, Any]]:
        if self.data is None:
            raise ValueError("mixed has no default dataset; pass data= a JSONL file of {'id', 'prompt', 'checks'} "
                             "rows (the micro world writes one)")
        rows = read_rows(self.data)
        require_fields(rows, ("id", "prompt", "checks"), self.name, self.data)
        for i, row in enumerate(rows):
            unknown = sorted(set(row["checks"]) - set(CHECKS))
            if unknown or not row["checks"]:
                raise ValueError(f"mixed: row {i} of {self.data} has checks {sorted(row['checks'])}; each row needs "
                                 f"at least one of {list(CHECKS)} and nothing else")
        rows = [{**r, "id": str(r["id"])} for r in rows]
        return rows[: self.limit] if self.limit is not None else rows

    def user_message(self, row: dict[str, Any]) -> str:
        if self.fewshot:
            raise ValueError("mixed has no few-shot format; use fewshot=0")
        return row["prompt"]

    def score(self, rows: Sequence[dict[str, Any]], outputs: Sequence[str]) -> list[SampleResult]:
        if len(rows) != len(outputs):
            raise ValueError(f"mixed: {len(rows)} rows but {len(outputs)} outputs")
        verdicts: list[dict[str, bool]] = [{} for _ in rows]
        for check in CHECKS:
            idx = [i for i, r in enumerate(rows) if check in r["checks"]]
            if not idx:
                continue
            sub = [{"id": rows[i]["id"], "key": rows[i]["id"], "prompt": rows[i]["prompt"], **rows[i]["checks"][check]}
                   for i in idx]
            if check == "gsm8k":
                results = GSM8K().score(sub, [outputs[i] for i in idx])
            elif check == "mbpp":
                results = MBPP(sandbox=self.sandbox).score(sub, [function_block(outputs[i]) for i in idx])
            else:
                results = IFEval().score(sub, [outputs[i] for i in idx])
            for i, res in zip(idx, results):
                verdicts[i][check] = bool(res.correct)
        return [SampleResult(id=r["id"], extracted=None, gold=sorted(r["checks"]), correct=all(v.values()),
                             metrics={"all_checks": float(all(v.values())),
                                      "check_acc": [float(x) for x in v.values()]},
                             details={"kind": r.get("kind"), "checks": v})
                for r, v in zip(rows, verdicts)]
