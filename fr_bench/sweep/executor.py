"""Pluggable executors for the sweep's artifact builds and evaluation jobs, and the scheduler that feeds them.

- `local`, `workers: 1` (default): everything runs in this process, one task after the other.
- `local`, `workers: N`: N spawned worker processes (`fr_bench.parallel.WorkerPool`).
- `local`, `gpus: [0, 1]` or `auto`: one worker process per GPU, `CUDA_VISIBLE_DEVICES` set to its GPU.
- `ray`: each task a Ray task with its CPU/GPU resources, on an existing cluster (`address`) or a local instance.

Every executor runs the same task functions, and every task seeds itself, so results do not depend on the executor.
Workers share `$FR_BENCH_CACHE` (a shared file system for a Ray cluster); every result is written atomically there.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol

from ..config import ConfigError
from ..parallel import WorkerPool
from ..plugins import load_plugins
from .config import ExecutorConfig

log = logging.getLogger("fr_bench.sweep")


class Executor(Protocol):
    # the worker processes behind the executor, for parallel work outside the task graph (the micro world's models)
    processes: WorkerPool | None
    # tasks it runs at once; the scheduler submits no more, so a task that becomes ready later (a dependant on the
    # critical path) does not queue behind tasks submitted earlier but listed after it
    slots: float

    def submit(self, fn: Callable[..., Any], *args: Any, cpus: float, gpus: float) -> Future: ...


class InlineExecutor:
    """Runs each task in this process as it is submitted (`workers: 1`): the sweep's original serial behaviour."""

    processes = None
    slots = 1.0

    def submit(self, fn: Callable[..., Any], *args: Any, cpus: float, gpus: float) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args))
        except Exception as exc:  # noqa: BLE001 - the scheduler re-raises it with the task's label
            fut.set_exception(exc)
        return fut


def run_with_plugins(plugins: tuple[str, ...], payload: bytes) -> Any:
    """A task in a worker or on a Ray node: import the sweep's plug-ins, then unpickle the task (its arguments may
    hold a plug-in's classes) and run it."""
    load_plugins(plugins)
    fn, args = pickle.loads(payload)
    return fn(*args)


class PoolExecutor:
    """Tasks on spawned worker processes (`workers: N` or one per GPU), started at the first task; one slot each."""

    def __init__(self, workers: int, threads: int, devices: list[str] | None, plugins: tuple[str, ...] = ()) -> None:
        self.processes = WorkerPool(workers, threads, devices)
        self.slots = float(workers)
        self.plugins = plugins

    def submit(self, fn: Callable[..., Any], *args: Any, cpus: float, gpus: float) -> Future:
        return self.processes.submit(run_with_plugins, self.plugins, pickle.dumps((fn, args)))


class RayExecutor:
    """Each task a Ray task reserving `cpus`/`gpus`; connects to `address` or starts a local Ray instance."""

    processes = None
    slots = math.inf  # the cluster queues tasks by their resources

    def __init__(self, cfg: ExecutorConfig, plugins: tuple[str, ...] = ()) -> None:
        import ray

        self.plugins = plugins
        if not ray.is_initialized():
            ray.init(address=cfg.address, include_dashboard=False, log_to_driver=False)
        self.ray = ray

    def submit(self, fn: Callable[..., Any], *args: Any, cpus: float, gpus: float) -> Future:
        task = self.ray.remote(num_cpus=cpus, num_gpus=gpus)(run_with_plugins)
        return task.remote(self.plugins, pickle.dumps((fn, args))).future()


def gpu_devices(cfg: ExecutorConfig) -> list[str]:
    """The `CUDA_VISIBLE_DEVICES` value of each local GPU worker ([] without `gpus`), after checking the config.

    Ids are torch's (0..n-1 among the devices this process sees); under an outer `CUDA_VISIBLE_DEVICES` they are
    mapped back to its entries, so a worker sees exactly the GPU that the id names here."""
    if cfg.gpus is None or cfg.gpus == []:
        return []
    if cfg.kind != "local":
        raise ConfigError(f"executor.gpus: only for kind=local; with kind={cfg.kind} set num_gpus_per_cell and "
                          f"num_gpus_per_artifact instead.")
    if cfg.workers != 1:
        raise ConfigError(f"executor.workers={cfg.workers} and executor.gpus: give one of them; with gpus there is "
                          f"one worker per GPU.")
    import torch

    count = torch.cuda.device_count()
    if count == 0:
        raise ConfigError(f"executor.gpus={cfg.gpus}: no CUDA device is visible (torch {torch.__version__}, "
                          f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); drop executor.gpus "
                          f"or run where CUDA is available.")
    if cfg.gpus == "auto":
        ids = list(range(count))
    elif isinstance(cfg.gpus, list) and cfg.gpus and all(isinstance(i, int) and not isinstance(i, bool)
                                                         for i in cfg.gpus):
        ids = list(cfg.gpus)
    else:
        raise ConfigError(f"executor.gpus={cfg.gpus!r}: use a list of device ids (e.g. [0, 1]) or 'auto'.")
    bad = sorted({i for i in ids if not 0 <= i < count})
    if bad or len(set(ids)) != len(ids):
        raise ConfigError(f"executor.gpus={ids}: ids must be distinct and in 0..{count - 1} ({count} visible "
                          f"device(s)); fix the list or use 'auto'.")
    outer = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = [x.strip() for x in outer.split(",")] if outer else [str(i) for i in range(count)]
    return [names[i] for i in ids]


def check_executor(cfg: ExecutorConfig) -> int:
    """Validate the executor section before any work starts; return how many local worker processes it runs
    (1 = in this process; also for `ray`, whose parallelism belongs to the cluster)."""
    if cfg.kind not in ("local", "ray"):
        raise ConfigError(f"executor.kind: '{cfg.kind}' is not an executor; use 'local' or 'ray'.")
    if cfg.workers < 1:
        raise ConfigError(f"executor.workers={cfg.workers}: must be >= 1 (1 = in this process, N = N worker "
                          f"processes).")
    if cfg.kind == "ray" and cfg.workers != 1:
        raise ConfigError(f"executor.workers={cfg.workers}: only for kind=local; Ray runs as many tasks at once as "
                          f"its cluster has num_cpus_per_cell/num_cpus_per_artifact for.")
    if cfg.kind == "ray":
        try:
            import ray  # noqa: F401
        except ImportError as exc:
            raise ConfigError("executor.kind: 'ray' needs the optional extra: pip install 'fr_bench[ray]'.") from exc
    devices = gpu_devices(cfg)
    return len(devices) or (cfg.workers if cfg.kind == "local" else 1)


@contextlib.contextmanager
def open_executor(cfg: ExecutorConfig, threads: int, plugins: tuple[str, ...] = ()) -> Iterator[Executor]:
    """The executor `cfg` describes, importing `plugins` (resolved, `fr_bench.plugins`) in every process it runs
    tasks in; a worker pool is shut down on exit (after its running tasks end)."""
    workers = check_executor(cfg)
    if cfg.kind == "ray":
        yield RayExecutor(cfg, plugins)
    elif workers == 1 and not cfg.gpus:
        yield InlineExecutor()
    else:
        executor = PoolExecutor(workers, threads, gpu_devices(cfg) or None, plugins)
        try:
            yield executor
        finally:
            executor.processes.shutdown(wait=True, cancel_futures=True)


def prepare_task_process(cache: str, threads: int) -> None:
    """First call of every task function: the task may run in a fresh worker or on a Ray node, which knows neither
    the sweep's cache folder nor its torch thread count."""
    os.environ["FR_BENCH_CACHE"] = cache
    if threads:
        import torch

        torch.set_num_threads(threads)


class TaskError(RuntimeError):
    """A task failed (in this process or a worker); the message names the task, the cause is the task's error."""


@dataclass
class Task:
    label: str                     # named in errors: "artifact router_sft[seed=0]", "cells fusionroute/seed0"
    key: str                       # what other tasks list in `deps`
    deps: set[str]                 # keys of tasks that must finish first; keys of no task here count as finished
    fn: Callable[..., Any]         # module-level (picklable) function, run as fn(*args) in a worker
    args: tuple[Any, ...]
    cpus: float = 1.0
    gpus: float = 0.0


def longest_chains_first(tasks: list[Task]) -> list[Task]:
    """Tasks with more (transitive) dependants first, ties in list order: the router chain (SFT -> pairs -> CDPO ->
    evaluations) starts before one-step trainings, so workers are not left waiting on it at the end. An ancestor
    always has more dependants than its descendants, so a topological list stays topological."""
    dependants: dict[str, set[str]] = {t.key: set() for t in tasks}
    for t in tasks:
        for d in t.deps:
            if d in dependants:
                dependants[d].add(t.key)

    def count(key: str, seen: set[str]) -> set[str]:
        for k in dependants[key] - seen:
            seen.add(k)
            count(k, seen)
        return seen

    n = {t.key: len(count(t.key, set())) for t in tasks}
    return [t for _, t in sorted(enumerate(tasks), key=lambda it: (-n[it[1].key], it[0]))]


def run_tasks(executor: Executor, tasks: list[Task]) -> Iterator[tuple[Task, Any]]:
    """Fill the executor's free slots with tasks whose dependencies finished, first in list order (the list is the
    priority), wait for any, repeat; yield (task, result) as each finishes. After a failure nothing new starts, the
    running tasks finish (their results are cached), then the first failure is raised as `TaskError` naming its
    task. With the inline executor, a topologically ordered list runs exactly in list order."""
    keys = {t.key for t in tasks}
    finished: set[str] = set()
    todo = list(tasks)
    running: dict[Future, Task] = {}
    started: dict[str, float] = {}
    failures: list[tuple[Task, Exception]] = []

    def collect(fut: Future) -> Iterator[tuple[Task, Any]]:
        task = running.pop(fut)
        exc = fut.exception()
        if exc is None:
            finished.add(task.key)
            log.info("%s done in %.1f s", task.label, time.perf_counter() - started[task.key])
            yield task, fut.result()
        else:
            log.error("%s failed: %s: %s", task.label, type(exc).__name__, exc)
            failures.append((task, exc))  # type: ignore[arg-type]

    while True:
        i = 0
        while i < len(todo) and not failures and len(running) < executor.slots:
            task = todo[i]
            if not all(d in finished or d not in keys for d in task.deps):
                i += 1
                continue
            del todo[i]
            started[task.key] = time.perf_counter()
            fut = executor.submit(task.fn, *task.args, cpus=task.cpus, gpus=task.gpus)
            running[fut] = task
            if fut.done():  # the inline executor: dependants later in the list may start now
                yield from collect(fut)
        if not running:
            break
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for fut in done:
            yield from collect(fut)
    if failures:
        task, exc = failures[0]
        notes = "".join(f"; {n}" for n in getattr(exc, "__notes__", ()))
        raise TaskError(f"{task.label} failed: {type(exc).__name__}: {exc}{notes}") from exc
    assert not todo, f"tasks never became ready (dependency cycle?): {[t.label for t in todo]}"
