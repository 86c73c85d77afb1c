"""The sweep's executors and scheduler: dependency order, failures named by their task (also from a worker process),
finished work kept, executor config checked before any work. End-to-end equality across executors: test_sweep_e2e."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from fr_bench.config import ConfigError, load_config
from fr_bench.sweep.__main__ import main as sweep_main
from fr_bench.sweep.config import ExecutorConfig, SweepConfig
from fr_bench.sweep.executor import (InlineExecutor, PoolExecutor, Task, TaskError, check_executor, gpu_devices,
                                     longest_chains_first, run_tasks)

SMOKE = str(Path(__file__).resolve().parents[1] / "experiments" / "smoke.yaml")


def record(log: str, name: str) -> str:
    """A task body that can run in a worker process: appends its name, process and visible GPUs to a file."""
    with open(log, "a") as fh:
        fh.write(f"{name} {os.getpid()} {os.environ.get('CUDA_VISIBLE_DEVICES')}\n")
    return name


def names(log: str) -> list[str]:
    return [line.split()[0] for line in Path(log).read_text().splitlines()]


def fail(name: str) -> None:
    exc = ValueError(f"{name} is broken")
    exc.add_note(f"while evaluating cell {name}/t/seed0")
    raise exc


def graph(log: str) -> list[Task]:
    """a -> c, b -> d (d also needs c); e independent; listed in a topological order."""
    def t(key: str, *deps: str) -> Task:
        return Task(f"artifact {key}", key, set(deps), record, (log, key))

    return [t("a"), t("b"), t("c", "a"), t("d", "b", "c"), t("e")]


def test_inline_runs_in_list_order(tmp_path):
    log = str(tmp_path / "log")
    done = [task.key for task, _ in run_tasks(InlineExecutor(), graph(log))]
    assert done == ["a", "b", "c", "d", "e"] and names(log) == done


def test_each_finished_task_logs_its_wall_time(tmp_path, caplog):
    """The timeline of a sweep (which task ran how long) comes from these lines: `done in N s` per task."""
    with caplog.at_level("INFO", logger="fr_bench.sweep"):
        list(run_tasks(InlineExecutor(), graph(str(tmp_path / "log"))))
    done = [r.getMessage() for r in caplog.records if " done in " in r.getMessage()]
    assert [m.split(" done in ")[0] for m in done] == [f"artifact {k}" for k in "abcde"]
    assert all(m.endswith(" s") for m in done)


def test_longest_chains_start_first_and_the_order_stays_topological():
    """a -> c -> d and b -> d: a has two dependants, b and c one, d and e none."""
    assert [t.key for t in longest_chains_first(graph("unused"))] == ["a", "b", "c", "d", "e"]
    chain = [Task("one-step", "x", set(), record, ()), Task("sft", "s", set(), record, ()),
             Task("pairs", "p", {"s"}, record, ()), Task("cdpo", "c", {"s", "p"}, record, ())]
    assert [t.key for t in longest_chains_first(chain)] == ["s", "p", "x", "c"]


def test_failure_names_the_task_stops_new_work_and_keeps_finished(tmp_path):
    log = str(tmp_path / "log")
    tasks = graph(log)
    tasks[1] = Task("artifact b", "b", set(), fail, ("b",))
    with pytest.raises(TaskError, match=r"artifact b failed: ValueError: b is broken; while evaluating cell b/t/seed0"):
        list(run_tasks(InlineExecutor(), tasks))
    assert names(log) == ["a"]  # nothing started after the failure


@pytest.mark.slow  # two spawned workers import torch, transformers and Lightning (~10 s)
def test_worker_processes_respect_dependencies_and_surface_errors(tmp_path):
    """Two workers ("GPUs" g0 and g1): dependencies hold, each worker keeps one device, errors carry the label."""
    log = str(tmp_path / "log")
    executor = PoolExecutor(2, threads=1, devices=["g0", "g1"])
    try:
        done = [task.key for task, _ in run_tasks(executor, graph(log))]
        assert sorted(done) == ["a", "b", "c", "d", "e"]
        order = names(log)
        assert order.index("a") < order.index("c") < order.index("d") and order.index("b") < order.index("d")
        device_of = {pid: dev for _, pid, dev in (line.split() for line in Path(log).read_text().splitlines())}
        assert set(device_of.values()) <= {"g0", "g1"} and len(set(device_of.values())) == len(device_of)

        tasks = [Task("artifact slow", "s", set(), record, (log, "slow")),
                 Task("cells m/seed0", "f", set(), fail, ("m",)),
                 Task("artifact after", "x", {"f"}, record, (log, "after"))]
        with pytest.raises(TaskError, match=r"cells m/seed0 failed: ValueError: m is broken; while evaluating cell"):
            list(run_tasks(executor, tasks))
        order = names(log)
        assert "slow" in order and "after" not in order  # the sibling finished, the dependant never started
    finally:
        executor.processes.shutdown()


@pytest.mark.parametrize("overrides, match", [
    (["executor.workers=0"], r"executor.workers=0: must be >= 1"),
    (["executor.kind=ray", "executor.workers=2"], r"executor.workers=2: only for kind=local"),
    (["executor.kind=slurm"], r"executor.kind: 'slurm' is not an executor"),
    (["executor.gpus=auto", "executor.kind=ray"], r"executor.gpus: only for kind=local"),
    (["executor.gpus=[0]", "executor.workers=2"], r"executor.workers=2 and executor.gpus: give one"),
])
def test_bad_executor_config_is_named(overrides, match):
    with pytest.raises(ConfigError, match=match):
        check_executor(load_config(SweepConfig, SMOKE, overrides).executor)


def test_gpus_need_visible_cuda_devices():
    import torch

    count = torch.cuda.device_count()
    if count == 0:
        with pytest.raises(ConfigError, match=r"executor.gpus=auto: no CUDA device is visible"):
            check_executor(ExecutorConfig(gpus="auto"))
    else:
        assert check_executor(ExecutorConfig(gpus="auto")) == count
    with pytest.raises(ConfigError, match=r"ids must be distinct and in 0\.\.|no CUDA device"):
        check_executor(ExecutorConfig(gpus=[count]))
    with pytest.raises(ConfigError, match=r"use a list of device ids|no CUDA device"):
        check_executor(ExecutorConfig(gpus="all"))


def test_gpu_ids_are_torch_ids_mapped_through_an_outer_cuda_visible_devices(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert gpu_devices(ExecutorConfig(gpus="auto")) == ["3", "5"]
    assert gpu_devices(ExecutorConfig(gpus=[1])) == ["5"] and check_executor(ExecutorConfig(gpus=[1, 0])) == 2
    with pytest.raises(ConfigError, match=r"executor.gpus=\[2\]: ids must be distinct and in 0..1"):
        gpu_devices(ExecutorConfig(gpus=[2]))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert gpu_devices(ExecutorConfig(gpus=[1])) == ["1"]


def test_worker_counts():
    assert check_executor(ExecutorConfig()) == 1
    assert check_executor(ExecutorConfig(workers=3)) == 3


def test_sweep_cli_rejects_bad_executor_before_any_work(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("FR_BENCH_CACHE", str(tmp_path / "cache"))
    assert sweep_main([SMOKE, "executor.workers=0", "--out", str(tmp_path / "out")]) == 2
    assert "executor.workers=0" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()
