"""The sweep's YAML schema. One file names the world, the methods, the tasks, the seeds and every training knob."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import MISSING


@dataclass
class MethodEntry:
    """One row of the results table: a registered method plus its options."""

    method: str = MISSING               # name in the method registry (fr_bench.methods)
    group: str = "baseline"             # fusionroute | ablation | baseline | expert (table order, plots)
    options: dict[str, Any] = field(default_factory=dict)
    # Per-method artifact overrides, merged over the sweep-level `artifacts:` (e.g. a second task-arithmetic row
    # with {merge_task_arithmetic: {lam: 0.4}}); an override makes a separate artifact, and everything downstream of
    # it is rebuilt for this method only.
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    note: str = ""                      # printed under the report's main table (e.g. "fr_bench's variant, not the paper's")


@dataclass
class WorldConfig:
    """Where the models and data come from: the micro world (built from scratch) or real checkpoints."""

    kind: str = "micro"                 # micro | checkpoints
    micro_config: str = "experiments/micro.yaml"
    micro_overrides: list[str] = field(default_factory=list)
    # micro: the split the micro tasks are scored on. Choose settings on `validation`; only the reported sweep reads
    # `test` (the cell keys differ, so the two never share cached results).
    eval_split: str = "test"
    # One world per sweep seed: seed s trains the world (micro: weight init, base and experts; checkpoints: the
    # experts the sweep trains) with its seeds offset by s, on the same data, so the intervals hold the world's
    # training variance. Every cell then belongs to a seed. False = one world shared by every seed.
    seeded: bool = False
    # kind: checkpoints — local folders or Hub names
    tokenizer: str | None = None
    base: str | None = None
    # name -> checkpoint, or name -> {base, data, recipe, ...}: an expert trained by the sweep (fr_bench.expert_stage)
    experts: dict[str, Any] = field(default_factory=dict)
    router_init: str | None = None      # a checkpoint, or the name of an expert (e.g. the trained IF expert)
    sft_data: dict[str, str] = field(default_factory=dict)
    pref_prompts: dict[str, str] = field(default_factory=dict)
    dtype: str = "float32"


@dataclass
class TaskEntry:
    task: str = MISSING                 # name in the task registry (fr_bench.tasks)
    data: str | None = None             # local path; None = the task's Hub dataset
    limit: int | None = None
    max_new_tokens: int = 400


@dataclass
class ExecutorConfig:
    """Where artifact builds and evaluation jobs run (fr_bench/sweep/executor.py; README, "Executors")."""

    kind: str = "local"                 # local | ray
    workers: int = 1                    # local: 1 = in this process, one task at a time; N = N worker processes
    gpus: Any = None                    # local: one worker per GPU, e.g. [0, 1] or "auto" (every visible GPU)
    address: str | None = None          # ray: existing cluster address ("auto", "ray://host:10001"); None = local
    num_cpus_per_cell: float = 1.0      # ray: resources of each evaluation job ...
    num_gpus_per_cell: float = 0.0
    num_cpus_per_artifact: float = 1.0  # ray: ... and of each artifact build
    num_gpus_per_artifact: float = 0.0
    devices: str = "auto"               # Lightning Trainer devices for training stages
    strategy: str = "auto"              # Lightning strategy (ddp, fsdp, ...)
    num_nodes: int = 1


@dataclass
class SweepConfig:
    name: str = MISSING
    # Python files (relative to this YAML) or module names imported before any lookup, here and in every worker:
    # methods, policies, tasks and artifacts they register work like built-ins (fr_bench/plugins.py).
    plugins: list[str] = field(default_factory=list)
    world: WorldConfig = field(default_factory=WorldConfig)
    methods: dict[str, MethodEntry] = field(default_factory=dict)
    # Display name -> task. Empty with a micro world = the world's four micro tasks.
    tasks: dict[str, TaskEntry] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])
    limit: int | None = None            # cap on rows per task (all tasks), for quick runs
    # Decode batch. Like threads and the executor it is in no cache key: the engine decodes a row to the same tokens
    # alone or in a batch, up to float rounding (methods.<m>.options.batch_size is keyed, as every option is).
    batch_size: int = 16
    # torch intra-op threads for training and decoding; 0 = torch's default. Tiny models decode fastest on 1 thread,
    # and more threads than free cores make OpenMP spin (20x slower when another process holds a core).
    threads: int = 0
    reference_method: str = "fusionroute"
    # Per-artifact config overrides, validated against each artifact's dataclass (fr_bench.artifacts).
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    reports_dir: str = "reports"
