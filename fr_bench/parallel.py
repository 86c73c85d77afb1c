"""Pools of spawned worker processes for the sweep's local executor and the micro world's expert builds.

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
from concurrent.futures import ProcessPoolExecutor


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
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("fr_bench").setLevel(log_level)
    import torch

    torch.set_num_threads(threads)


def process_pool(workers: int, threads: int, devices: list[str] | None = None) -> ProcessPoolExecutor:
    """`workers` spawned processes with `worker_threads(threads, workers)` torch threads each; with `devices` (one
    `CUDA_VISIBLE_DEVICES` value per worker), each worker takes a different one.

    A pool never replaces a worker (no max_tasks_per_child), so each device stays with exactly one process."""
    ctx = multiprocessing.get_context("spawn")
    queue = None
    if devices is not None:
        if len(devices) != workers:
            raise ValueError(f"process_pool: {len(devices)} device(s) for {workers} worker(s); give one per worker.")
        queue = ctx.Queue()
        for device in devices:
            queue.put(device)
    return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                               initargs=(worker_threads(threads, workers), queue,
                                         logging.getLogger("fr_bench").getEffectiveLevel()))
