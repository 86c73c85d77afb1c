"""Aggregating per-sample scores into benchmark metrics.

Every metric is a ratio of sums (correct / total), kept as torchmetrics states with `dist_reduce_fx="sum"`, so
scores gathered on several processes combine exactly. A sample's metric value is a number (weight 1) or a list of
numbers (weight len(list)): IFEval's instruction-level accuracy averages over instructions, not prompts, so each
prompt contributes its list of per-instruction results.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import TYPE_CHECKING, Iterable, Sequence

import torch
from torchmetrics import Metric

if TYPE_CHECKING:
    from ..types import SampleResult


class RatioOfSums(Metric):
    """sum(values) / count(values) over everything passed to `update`, on every process."""

    full_state_update = False
    higher_is_better = True

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, values: torch.Tensor | Sequence[float]) -> None:
        values = torch.as_tensor(values, dtype=torch.float64).flatten()
        self.total += values.sum()
        self.count += values.numel()

    def compute(self) -> torch.Tensor:
        if self.count == 0:
            return torch.tensor(float("nan"), dtype=torch.float64)
        return self.total / self.count


def _values(value: float | bool | Iterable[float]) -> list[float]:
    if isinstance(value, (list, tuple)):
        return [float(v) for v in value]
    return [float(value)]


def aggregate_results(results: Sequence["SampleResult"], metric_names: Sequence[str]) -> dict[str, float]:
    """Each metric over all samples, plus `n` (the number of samples scored)."""
    metrics = {name: RatioOfSums() for name in metric_names}
    for r in results:
        for name, metric in metrics.items():
            if name not in r.metrics:
                raise KeyError(f"sample {r.id!r} has no value for metric {name!r}; it has {sorted(r.metrics)}")
            metric.update(_values(r.metrics[name]))
    out = {name: float(m.compute()) for name, m in metrics.items()}
    out["n"] = len(results)
    return out


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021): 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or k < 1 or k > n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def aggregate_pass_at_k(results: Sequence["SampleResult"], ks: Sequence[int] = (1, 10, 100)) -> dict[str, float]:
    """pass@k averaged over problems (ids), for each k no larger than the smallest sample count of any problem.

    With one sample per problem this is plain accuracy (pass@1); `n` is the number of problems, `samples` the
    number of programs run.
    """
    by_id: dict[str, list[bool]] = defaultdict(list)
    for r in results:
        by_id[r.id].append(bool(r.correct))
    if not by_id:
        return {"pass@1": float("nan"), "n": 0, "samples": 0}
    n_min = min(len(v) for v in by_id.values())
    out: dict[str, float] = {}
    for k in ks:
        if k <= n_min:
            metric = RatioOfSums()
            metric.update([pass_at_k(len(v), sum(v), k) for v in by_id.values()])
            out[f"pass@{k}"] = float(metric.compute())
    out["n"] = len(by_id)
    out["samples"] = len(results)
    return out
