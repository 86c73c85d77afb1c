"""The on-disk layout of a finished sweep, and loaders that check it.

A sweep directory `reports/<sweep>/` holds what the sweep runner wrote:

- `results.jsonl`: one tidy row per method x task x seed (`ResultRow`);
- `samples/<method>/<task>/seed<k>.jsonl`: one row per evaluated sample (fields in `SAMPLE_FIELDS`);
- `config.yaml`: the sweep config used; `meta.json`: `SweepMeta`;
- `judge.json`, after a judge run: the judge configs run on it (`judge.JUDGE_FILE`).

Everything under `tables/`, `plots/` and `report.md` is rendered from these files alone, so a report can be rebuilt
(or two sweeps compared) without any model.
"""
from __future__ import annotations

import json
import math
from dataclasses import MISSING as MISSING_FIELD, asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..cache import atomic_write_json, atomic_write_jsonl

DOMAINS = ("math", "code", "if", "mixed", "general")
METHOD_GROUPS = ("fusionroute", "ablation", "baseline", "expert")
# A sample row holds at least these; extra keys (e.g. a judge's verdicts) are kept as they are.
SAMPLE_FIELDS = ("id", "prompt", "output", "extracted", "gold", "correct", "metrics", "expert_choices", "tokens",
                 "cost_tokens")

RESULTS_FILE = "results.jsonl"
META_FILE = "meta.json"
CONFIG_FILE = "config.yaml"


class SweepFormatError(ValueError):
    """A sweep directory does not follow the layout above; the message names the file, the field and the fix."""


@dataclass(frozen=True)
class ResultRow:
    """The score of one method on one task for one seed (`primary` and `metrics` are fractions in [0, 1])."""

    sweep: str
    method: str
    task: str            # display name, e.g. "gsm8k" or "micro_math"
    domain: str          # one of DOMAINS
    seed: int
    n: int               # samples evaluated
    primary_metric: str
    primary: float
    metrics: dict[str, float]
    cost_tokens: int     # tokens run through any model forward, summed over the n samples
    wall_s: float
    method_group: str | None = None  # one of METHOD_GROUPS
    seeded: bool = True  # False: the run does not depend on the seed (one run, repeated under every seed)

    @classmethod
    def from_json(cls, obj: dict[str, Any], where: str) -> "ResultRow":
        types = {"sweep": str, "method": str, "task": str, "domain": str, "seed": int, "n": int,
                 "primary_metric": str, "primary": (int, float), "metrics": dict, "cost_tokens": int,
                 "wall_s": (int, float)}
        for key, typ in types.items():
            if key not in obj:
                raise SweepFormatError(f"{where}: field '{key}' is missing; every results row needs "
                                       f"{', '.join(types)} (see fr_bench/reports/schema.py).")
            if not isinstance(obj[key], typ) or isinstance(obj[key], bool):
                raise SweepFormatError(f"{where}: field '{key}' = {obj[key]!r} should be of type "
                                       f"{typ if isinstance(typ, type) else 'number'}.")
        if obj["domain"] not in DOMAINS:
            raise SweepFormatError(f"{where}: domain '{obj['domain']}' is not one of {DOMAINS}.")
        group = obj.get("method_group")
        if group is not None and group not in METHOD_GROUPS:
            raise SweepFormatError(f"{where}: method_group '{group}' is not one of {METHOD_GROUPS} (or omit it).")
        metrics = {str(k): float(v) for k, v in obj["metrics"].items()}
        return cls(sweep=obj["sweep"], method=obj["method"], task=obj["task"], domain=obj["domain"],
                   seed=obj["seed"], n=obj["n"], primary_metric=obj["primary_metric"], primary=float(obj["primary"]),
                   metrics=metrics, cost_tokens=obj["cost_tokens"], wall_s=float(obj["wall_s"]), method_group=group,
                   seeded=bool(obj.get("seeded", True)))

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        if out["method_group"] is None:
            del out["method_group"]
        if out["seeded"]:
            del out["seeded"]
        return out


@dataclass(frozen=True)
class SweepMeta:
    sweep: str
    expert_names: list[str]
    reference_method: str
    methods: list[str]   # config order
    tasks: list[str]     # config order
    seeds: list[int]
    created: str         # ISO time
    # Where the numbers came from: git commit, package versions, torch threads, CPU/GPU model (`fr_bench.provenance`);
    # a table that differs between two machines can be traced to what differs here.
    provenance: dict[str, Any] = field(default_factory=dict)
    method_notes: dict[str, str] = field(default_factory=dict)   # method -> note printed under the main table

    @classmethod
    def from_json(cls, obj: dict[str, Any], where: str) -> "SweepMeta":
        required = [k for k, f in cls.__dataclass_fields__.items()
                    if f.default is MISSING_FIELD and f.default_factory is MISSING_FIELD]
        missing = [k for k in required if k not in obj]
        if missing:
            raise SweepFormatError(f"{where}: field(s) {missing} missing; meta.json needs {required}.")
        return cls(**{k: obj[k] for k in cls.__dataclass_fields__ if k in obj})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def samples_path(sweep_dir: str | Path, method: str, task: str, seed: int) -> Path:
    return Path(sweep_dir) / "samples" / method / task / f"seed{seed}.jsonl"


def write_samples(sweep_dir: str | Path, method: str, task: str, seed: int, rows: list[dict[str, Any]]) -> Path:
    """Write one run's per-sample rows atomically (for the sweep runner); each row must carry SAMPLE_FIELDS."""
    for i, row in enumerate(rows):
        missing = [k for k in SAMPLE_FIELDS if k not in row]
        if missing:
            raise SweepFormatError(f"sample row {i} of {method}/{task}/seed{seed} lacks {missing}; "
                                   f"every sample row needs {SAMPLE_FIELDS} (use None where not applicable).")
    path = samples_path(sweep_dir, method, task, seed)
    atomic_write_jsonl(path, rows)
    return path


def write_results(sweep_dir: str | Path, rows: Iterable[ResultRow]) -> Path:
    """Rewrite `results.jsonl` atomically with all rows (a resumed sweep passes old and new rows)."""
    path = Path(sweep_dir) / RESULTS_FILE
    atomic_write_jsonl(path, [r.to_json() for r in rows])
    return path


def write_meta(sweep_dir: str | Path, meta: SweepMeta) -> Path:
    path = Path(sweep_dir) / META_FILE
    atomic_write_json(path, meta.to_json())
    return path


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open() as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise SweepFormatError(f"{path}:{lineno}: not valid JSON ({exc.msg}); the file is corrupt or was "
                                       f"cut short; re-run the sweep cell that wrote it.") from exc
    return rows


def sample_value(row: dict[str, Any], metric: str) -> float:
    """A sample's value of `metric`: its `metrics` entry, else `correct` as 1/0 (for the primary metric).

    A list entry (IFEval's per-instruction results) counts as the sample's fraction of passed items."""
    metrics = row.get("metrics") or {}
    value = metrics.get(metric)
    if isinstance(value, list):
        return sum(map(float, value)) / len(value) if value else 0.0
    if value is not None:
        return float(value)
    return float(bool(row.get("correct")))


@dataclass
class Sweep:
    """A loaded sweep directory. Methods and tasks come in table order (see `method_order`, `task_order`)."""

    root: Path
    meta: SweepMeta
    results: list[ResultRow]
    config_text: str | None
    _samples: dict[tuple[str, str, int], list[dict[str, Any]] | None] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.meta.sweep

    @property
    def reference(self) -> str:
        return self.meta.reference_method

    def method_groups(self) -> dict[str, str | None]:
        groups: dict[str, str | None] = {}
        for r in self.results:
            if r.method_group is not None or r.method not in groups:
                groups[r.method] = r.method_group
        if groups.get(self.reference) is None and self.reference in groups:
            groups[self.reference] = "fusionroute"
        return groups

    def method_order(self) -> list[str]:
        """Reference first, then ablations, baselines, experts; config order within a group; unknown group last."""
        present = list(dict.fromkeys(r.method for r in self.results))
        config_rank = {m: i for i, m in enumerate(self.meta.methods)}
        appear_rank = {m: i for i, m in enumerate(present)}
        groups = self.method_groups()

        def key(m: str) -> tuple[int, int, int]:
            g = groups.get(m)
            grank = -1 if m == self.reference else (METHOD_GROUPS.index(g) if g in METHOD_GROUPS else len(
                METHOD_GROUPS))
            return grank, config_rank.get(m, len(config_rank)), appear_rank[m]

        return sorted(present, key=key)

    def task_domains(self) -> dict[str, str]:
        return {r.task: r.domain for r in self.results}

    def task_order(self) -> list[str]:
        """Grouped by domain (math, code, if, general), config order within a domain."""
        domains = self.task_domains()
        present = list(dict.fromkeys(r.task for r in self.results))
        config_rank = {t: i for i, t in enumerate(self.meta.tasks)}
        appear_rank = {t: i for i, t in enumerate(present)}
        return sorted(present, key=lambda t: (DOMAINS.index(domains[t]), config_rank.get(t, len(config_rank)),
                                              appear_rank[t]))

    def primary_metric(self, task: str) -> str:
        return next(r.primary_metric for r in self.results if r.task == task)

    def rows(self, method: str, task: str) -> list[ResultRow]:
        """The method's rows on the task, sorted by seed."""
        return sorted((r for r in self.results if r.method == method and r.task == task), key=lambda r: r.seed)

    def runs(self, method: str, task: str) -> list[ResultRow]:
        """The method's independent runs on the task: every seed's row, or the first row alone when the method does
        not depend on the seed (its rows repeat one run)."""
        rows = self.rows(method, task)
        return rows[:1] if rows and not any(r.seeded for r in rows) else rows

    def run_values(self, method: str, task: str) -> dict[tuple[int, str], float] | None:
        """`sample_values` over `runs` only."""
        values = self.sample_values(method, task)
        if values is None:
            return None
        seeds = {r.seed for r in self.runs(method, task)}
        return {k: v for k, v in values.items() if k[0] in seeds}

    def samples(self, method: str, task: str, seed: int) -> list[dict[str, Any]] | None:
        """Per-sample rows of one run, or None when the sweep did not write them."""
        key = (method, task, seed)
        if key not in self._samples:
            path = samples_path(self.root, method, task, seed)
            self._samples[key] = _read_jsonl(path) if path.is_file() else None
        return self._samples[key]

    def sample_values(self, method: str, task: str, metric: str | None = None) -> dict[tuple[int, str], float] | None:
        """{(seed, id): value of `metric` (default: the task's primary)} over all seeds; None if any seed lacks
        its samples file."""
        metric = metric or self.primary_metric(task)
        out: dict[tuple[int, str], float] = {}
        for r in self.rows(method, task):
            samples = self.samples(method, task, r.seed)
            if samples is None:
                return None
            for s in samples:
                out[(r.seed, str(s["id"]))] = sample_value(s, metric)
        return out


def load_sweep(sweep_dir: str | Path) -> Sweep:
    """Load and check a sweep directory (results, meta, config); samples are read lazily."""
    root = Path(sweep_dir)
    results_file, meta_file = root / RESULTS_FILE, root / META_FILE
    for f in (results_file, meta_file):
        if not f.is_file():
            raise SweepFormatError(f"{f} not found; '{root}' is not a finished sweep directory "
                                   f"(expected {RESULTS_FILE}, {META_FILE}, {CONFIG_FILE}, samples/).")
    meta = SweepMeta.from_json(json.loads(meta_file.read_text()), str(meta_file))
    rows = [ResultRow.from_json(obj, f"{results_file}:{i + 1}") for i, obj in enumerate(_read_jsonl(results_file))]
    if not rows:
        raise SweepFormatError(f"{results_file} has no rows; the sweep finished no cell.")
    seen: dict[tuple[str, str, int], int] = {}
    for i, r in enumerate(rows):
        key = (r.method, r.task, r.seed)
        if key in seen:
            raise SweepFormatError(f"{results_file}: rows {seen[key] + 1} and {i + 1} are both {key}; keep one "
                                   f"row per method x task x seed (rewrite the file with write_results).")
        seen[key] = i
        if not math.isfinite(r.primary):
            raise SweepFormatError(f"{results_file}:{i + 1}: primary = {r.primary} is not a finite number.")
    for task in {r.task for r in rows}:
        kinds = {(r.domain, r.primary_metric) for r in rows if r.task == task}
        if len(kinds) > 1:
            raise SweepFormatError(f"{results_file}: task '{task}' has conflicting (domain, primary_metric) "
                                   f"{sorted(kinds)}; one task has one domain and one primary metric.")
    config = root / CONFIG_FILE
    return Sweep(root=root, meta=meta, results=rows, config_text=config.read_text() if config.is_file() else None)
