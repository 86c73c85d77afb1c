"""Resolve the sweep's `world:` section into a `World` (building the micro world when that is the kind)."""
from __future__ import annotations

from concurrent.futures import Executor
from pathlib import Path

from ..cache import config_hash
from ..config import ConfigError
from ..world import TaskSpec, World
from .config import SweepConfig, WorldConfig

MICRO_TASKS = {"micro_math": "gsm8k", "micro_code": "mbpp", "micro_if": "ifeval", "micro_general": "exact_match",
               "micro_mixed": "mixed"}


def _micro_config(wc: WorldConfig):
    from ..config import load_config
    from ..micro.config import MicroConfig

    return load_config(MicroConfig, wc.micro_config, wc.micro_overrides)


def world_key(wc: WorldConfig) -> str:
    """Identity of the world without building it (for planning and dry runs)."""
    if wc.kind == "micro":
        return config_hash("micro", _micro_config(wc))
    if wc.kind == "checkpoints":
        _check_checkpoints(wc)
        return config_hash("checkpoints", wc)
    raise ConfigError(f"world.kind: '{wc.kind}' is not a world kind; use 'micro' or 'checkpoints'.")


def _check_checkpoints(wc: WorldConfig) -> None:
    for key in ("tokenizer", "base", "router_init"):
        if not getattr(wc, key):
            raise ConfigError(f"world.{key}: required for world.kind=checkpoints (a local folder or a Hub name).")
    if len(wc.experts) < 2:
        raise ConfigError("world.experts: name at least two experts as {name: checkpoint}.")
    for name, path in {**{f"experts.{k}": v for k, v in wc.experts.items()}, "base": wc.base,
                       "router_init": wc.router_init, "tokenizer": wc.tokenizer}.items():
        p = Path(str(path))
        looks_local = str(path).startswith((".", "/", "~")) or p.exists()
        if looks_local and not p.expanduser().exists():
            raise ConfigError(f"world.{name}: path '{path}' does not exist; fix the path or give a Hub name.")
    for domain, path in {**wc.sft_data, **wc.pref_prompts}.items():
        if not Path(path).expanduser().exists():
            raise ConfigError(f"world.sft_data/pref_prompts.{domain}: file '{path}' does not exist.")


def planned_tasks(cfg: SweepConfig) -> dict[str, TaskSpec]:
    """The evaluation tasks by display name; a micro world without `tasks:` evaluates its four micro tasks.

    Task names and explicit data files are checked here, before any model is built or trained."""
    from ..tasks import task_names

    if not cfg.tasks:
        return {name: TaskSpec(task) for name, task in MICRO_TASKS.items()} if cfg.world.kind == "micro" else {}
    known = task_names()
    for name, t in cfg.tasks.items():
        if t.task not in known:
            raise ConfigError(f"tasks.{name}.task: '{t.task}' is not a registered task; known: {', '.join(known)}.")
        if t.data is not None:
            path = Path(t.data).expanduser()
            if not path.exists():
                raise ConfigError(f"tasks.{name}.data: file '{t.data}' does not exist; fix the path, or drop "
                                  f"`data` to load the task's Hub dataset.")
            if path.is_file() and path.stat().st_size == 0:
                raise ConfigError(f"tasks.{name}.data: file '{t.data}' is empty; point it at the benchmark's rows.")
    return {name: TaskSpec(t.task, t.data, t.limit, t.max_new_tokens) for name, t in cfg.tasks.items()}


def resolve_world(cfg: SweepConfig, pool: Executor | None = None) -> World:
    """Build (or load from cache) the world and fill in the task data paths it provides. A micro world trains its
    experts at once on `pool` (the local executor's worker processes) when given."""
    wc = cfg.world
    if wc.kind == "micro":
        from ..micro.build import build_micro_world

        world, _ = build_micro_world(_micro_config(wc), pool)
    else:
        _check_checkpoints(wc)
        world = World(tokenizer=wc.tokenizer, base=wc.base, experts=dict(wc.experts), router_init=wc.router_init,
                      sft_data=dict(wc.sft_data), pref_prompts=dict(wc.pref_prompts), dtype=wc.dtype)
    tasks = planned_tasks(cfg)
    for name, spec in tasks.items():
        if spec.data is None and name in world.tasks:
            base = world.tasks[name]
            tasks[name] = TaskSpec(spec.task, base.data, spec.limit or base.limit, base.max_new_tokens)
    world.tasks = tasks
    return world
