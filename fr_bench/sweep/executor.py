"""Pluggable executors for the sweep's evaluation jobs: in-process `local`, or `ray` (each job a Ray task with its
CPU/GPU resources, on an existing cluster or a local instance). Both run the same `run_job`, so results are equal."""
from __future__ import annotations

from typing import Callable, Iterable, Iterator

from ..config import ConfigError
from .cells import Job, run_job
from .config import ExecutorConfig


def local_executor(jobs: list[Job]) -> Iterator[list[str]]:
    for job in jobs:
        yield run_job(job)


def ray_executor(cfg: ExecutorConfig) -> Callable[[list[Job]], Iterator[list[str]]]:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("executor.kind: 'ray' needs the optional extra: pip install 'fr_bench[ray]'.") from exc

    def run(jobs: list[Job]) -> Iterator[list[str]]:
        if not ray.is_initialized():
            ray.init(address=cfg.address, include_dashboard=False, log_to_driver=False,
                     **({} if cfg.address else {"num_cpus": None}))
        remote = ray.remote(num_cpus=cfg.num_cpus_per_cell, num_gpus=cfg.num_gpus_per_cell)(run_job)
        pending = [remote.remote(job) for job in jobs]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            yield ray.get(ready[0])

    return run


def get_executor(cfg: ExecutorConfig) -> Callable[[list[Job]], Iterable[list[str]]]:
    if cfg.kind == "local":
        return local_executor
    if cfg.kind == "ray":
        return ray_executor(cfg)
    raise ConfigError(f"executor.kind: '{cfg.kind}' is not an executor; use 'local' or 'ray'.")
