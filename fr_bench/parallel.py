"""Pools of spawned worker processes for the sweep's local executor and the micro world's model builds.

Workers are spawned, not forked: a forked child inherits the parent's torch thread pools and CUDA state, which
deadlocks or breaks. Each worker sets its torch intra-op threads and, with devices, `CUDA_VISIBLE_DEVICES` (one device
per worker) before anything initialises CUDA, and logs like its parent, so messages from training stages still show.
A worker exits when its parent dies, so a killed sweep leaves no idle workers behind.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any, Callable


def worker_threads(threads: int, workers: int) -> int:
    """Torch threads per worker: `threads`, or with 0 (torch's default: every core) a fair share of the cores,
    because N workers each spinning on every core's OpenMP pool run many times slower than N single threads."""
    return threads or max(1, (os.cpu_count() or 1) // workers)


def _exit_with_parent(parent: int) -> None:
    """A worker blocks on its task queue forever once its parent is gone (a SIGKILLed sweep); exit instead."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


def _init_worker(threads: int, devices: "multiprocessing.Queue[str] | None", log_level: int) -> None:
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = devices.get()
    from . import logs

    logs.configure(log_level)
    import torch

    torch.set_num_threads(threads)
    import lightning  # noqa: F401
    import transformers  # noqa: F401


class WorkerPool(Executor):
    """`workers` spawned processes with `worker_threads(threads, workers)` torch threads each; with `devices` (one
    `CUDA_VISIBLE_DEVICES` value per worker), each worker takes a different one.

    Nothing starts until the first submit (a run with everything cached spawns nothing); then every worker starts at
    once and imports torch, transformers and Lightning (~12 s together, ~8 of them Lightning), so that none of them
    sits importing when its first training task arrives: on the smoke sweep that is ~10 s of ~80.
    Workers are never replaced (no max_tasks_per_child), so each device stays with exactly one process."""

    def __init__(self, workers: int, threads: int, devices: list[str] | None = None) -> None:
        if devices is not None and len(devices) != workers:
            raise ValueError(f"WorkerPool: {len(devices)} device(s) for {workers} worker(s); give one per worker.")
        self.workers, self.threads, self.devices = workers, threads, devices
        self._pool: ProcessPoolExecutor | None = None

    def _start(self) -> ProcessPoolExecutor:
        ctx = multiprocessing.get_context("spawn")
        queue = None
        if self.devices is not None:
            queue = ctx.Queue()
            for device in self.devices:
                queue.put(device)
        pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker,
                                   initargs=(worker_threads(self.threads, self.workers), queue,
                                             logging.getLogger("fr_bench").getEffectiveLevel()))
        for _ in range(self.workers):  # the pool spawns a process per task while none is idle: this starts them all
            pool.submit(int)
        return pool

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        if self._pool is None:
            self._pool = self._start()
        return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)
