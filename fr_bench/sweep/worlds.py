"""Resolve the sweep's `world:` section into a `World` (building the micro world when that is the kind)."""
from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import replace
from pathlib import Path

from ..cache import config_hash
from ..config import ConfigError
from ..world import TaskSpec, World
from .config import SweepConfig, TaskEntry, WorldConfig

MICRO_TASKS = {"micro_math": "gsm8k", "micro_code": "mbpp", "micro_if": "ifeval", "micro_general": "exact_match",
               "micro_mixed": "mixed"}
EVAL_SPLITS = ("test", "validation")


def _micro_config(wc: WorldConfig, seed: int | None = None):
    from ..config import load_config
    from ..micro.config import MicroConfig

    cfg = load_config(MicroConfig, wc.micro_config, wc.micro_overrides)
    return cfg.for_seed(seed) if wc.seeded and seed is not None else cfg


def world_key(wc: WorldConfig, seed: int | None = None) -> str:
    """Identity of the world (of sweep seed `seed` when `world.seeded`) without building it (planning, dry runs)."""
    if wc.kind == "micro":
        from ..micro.build import world_code

        return config_hash("micro", _micro_config(wc, seed), world_code())
    if wc.kind == "checkpoints":
        _check_checkpoints(wc)
        specs = trained_expert_specs(wc, seed)
        if not specs:
            return config_hash("checkpoints", wc)
        from ..expert_stage import expert_key

        # trained experts: their artifact keys (base weights, data files, stage version), not only the spec
        return config_hash("checkpoints", wc, {name: expert_key(spec) for name, spec in specs.items()})
    raise ConfigError(f"world.kind: '{wc.kind}' is not a world kind; use 'micro' or 'checkpoints'.")


def world_keys(cfg: SweepConfig) -> dict[int, str]:
    """The world key of each sweep seed (one key for all of them unless `world.seeded`)."""
    if cfg.world.seeded and cfg.world.kind == "checkpoints" and not trained_expert_specs(cfg.world):
        raise ConfigError("world.seeded: this checkpoints world trains nothing (every expert is a finished "
                          "checkpoint), so its seeds cannot vary it; remove world.seeded or give trained experts.")
    return {s: world_key(cfg.world, s) for s in cfg.seeds}


def trained_expert_specs(wc: WorldConfig, seed: int | None = None) -> dict:
    """The experts given as {base, data, recipe, ...} (trained by the sweep), validated; checkpoint strings skipped.
    With `world.seeded` and a sweep seed, their data-sampling and training seeds are offset by it."""
    from ..config import load_config
    from ..expert_stage import ExpertSpec

    specs = {}
    for name, value in wc.experts.items():
        if not isinstance(value, str):
            where = f"world.experts.{name}"
            try:
                spec = load_config(ExpertSpec, extra=dict(value))
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from exc
            spec = replace(spec.validate(where), tokenizer=spec.tokenizer or wc.tokenizer)
            if wc.seeded and seed is not None:
                spec = replace(spec, seed=spec.seed + seed, train=replace(spec.train, seed=spec.train.seed + seed))
            specs[name] = spec
    return specs


def _check_checkpoints(wc: WorldConfig) -> None:
    for key in ("tokenizer", "base", "router_init"):
        if not getattr(wc, key):
            raise ConfigError(f"world.{key}: required for world.kind=checkpoints (a local folder or a Hub name).")
    if len(wc.experts) < 2:
        raise ConfigError("world.experts: name at least two experts as {name: checkpoint}.")
    specs = trained_expert_specs(wc)
    named = {f"experts.{k}": v for k, v in wc.experts.items() if k not in specs}
    named.update({f"experts.{k}.base": s.base for k, s in specs.items()})
    for key in ("base", "router_init"):
        if getattr(wc, key) not in wc.experts:
            named[key] = getattr(wc, key)
    for name, path in {**named, "tokenizer": wc.tokenizer}.items():
        p = Path(str(path))
        looks_local = str(path).startswith((".", "/", "~")) or p.exists()
        if looks_local and not p.expanduser().exists():
            raise ConfigError(f"world.{name}: path '{path}' does not exist; fix the path or give a Hub name.")
    for domain, path in {**wc.sft_data, **wc.pref_prompts}.items():
        if path not in specs and not Path(path).expanduser().exists():
            raise ConfigError(f"world.sft_data/pref_prompts.{domain}: file '{path}' does not exist.")


def _check_limit(cfg: SweepConfig, name: str, t: TaskEntry) -> None:
    """A limit above the rows of a local data file fails here, before training (Hub data is checked when a cell
    loads it: `Task.limited`)."""
    from ..tasks import get_task

    limit = t.limit if cfg.limit is None else min(x for x in (t.limit, cfg.limit) if x is not None)
    if limit is None:
        return
    rows = len(get_task(t.task, data=t.data).load())
    if limit > rows:
        field = f"tasks.{name}.limit" if t.limit == limit else "limit (sweep-wide)"
        raise ConfigError(f"{field}: {limit} but {t.data} holds only {rows} evaluation rows of {t.task}; lower it "
                          f"to at most {rows}, remove it, or point tasks.{name}.data at the full data.")


def planned_tasks(cfg: SweepConfig) -> dict[str, TaskSpec]:
    """The evaluation tasks by display name; a micro world without `tasks:` evaluates its four micro tasks.

    Task names and explicit data files are checked here, before any model is built or trained."""
    from ..tasks import task_names

    if cfg.world.eval_split not in EVAL_SPLITS:
        raise ConfigError(f"world.eval_split: '{cfg.world.eval_split}' is not one of {', '.join(EVAL_SPLITS)}; "
                          "tune on validation, report on test.")
    if not cfg.tasks:
        return ({name: TaskSpec(task, split=cfg.world.eval_split) for name, task in MICRO_TASKS.items()}
                if cfg.world.kind == "micro" else {})
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
            _check_limit(cfg, name, t)
    return {name: TaskSpec(t.task, t.data, t.limit, t.max_new_tokens, cfg.world.eval_split)
            for name, t in cfg.tasks.items()}


def resolve_worlds(cfg: SweepConfig, pool: Executor | None = None) -> dict[int, World]:
    """The world of each sweep seed, built (or loaded from the cache) with their task data paths filled in; the same
    World for every seed unless `world.seeded`. A micro world trains its models on `pool` (the local executor's
    worker processes) when given: every seed's base at once, each world's experts as soon as its base exists."""
    wc = cfg.world
    seeds = list(cfg.seeds) if wc.seeded else [cfg.seeds[0]]
    if wc.kind == "micro":
        from ..micro.build import build_micro_worlds

        built = build_micro_worlds([_micro_config(wc, s) for s in seeds], pool)
        worlds = {s: world for s, (world, _) in zip(seeds, built)}
    else:
        _check_checkpoints(wc)
        from ..expert_stage import build_experts

        specs = {s: trained_expert_specs(wc, s) for s in seeds}
        folders = build_experts({_label(name, s, seeds): spec for s in seeds for name, spec in specs[s].items()},
                                pool)
        worlds = {s: _checkpoints_world(wc, {name: folders[_label(name, s, seeds)] for name in specs[s]})
                  for s in seeds}
    for world in worlds.values():
        world.tasks = _world_tasks(cfg, world)
    return {s: worlds[s if wc.seeded else seeds[0]] for s in cfg.seeds}


def worlds_to_build(cfg: SweepConfig) -> dict[int, list[str]]:
    """Per world (by its first sweep seed), what resolving it would still train: a micro world's data, tokenizer and
    models, a checkpoints world's trained experts. Builds nothing (the sweep's dry run)."""
    wc = cfg.world
    seeds = list(cfg.seeds) if wc.seeded else [cfg.seeds[0]]
    if wc.kind == "micro":
        from ..micro.status import to_build

        return dict(zip(seeds, to_build([_micro_config(wc, s) for s in seeds])))
    from ..cache import is_complete
    from ..expert_stage import expert_folder

    return {s: [f"expert {name}" for name, spec in trained_expert_specs(wc, s).items()
                if not is_complete(expert_folder(spec))] for s in seeds}


def resolve_world(cfg: SweepConfig, pool: Executor | None = None) -> World:
    """The world of the sweep's first seed (the only one unless `world.seeded`)."""
    return resolve_worlds(cfg, pool)[cfg.seeds[0]]


def _label(name: str, seed: int, seeds: list[int]) -> str:
    return name if len(seeds) == 1 else f"{name} (sweep seed {seed})"


def _checkpoints_world(wc: WorldConfig, trained: dict[str, Path]) -> World:
    """The world of checkpoint experts and of the trained experts' folders `trained` (by expert name)."""
    from ..expert_stage import TASK_ROWS, TRAIN_ROWS

    experts = {k: str(trained[k]) if k in trained else v for k, v in wc.experts.items()}

    def rows_of(files: dict[str, str], name: str) -> dict[str, str]:   # a trained expert's name -> its rows
        return {d: str(Path(experts[v]) / name) if v in trained else v for d, v in files.items()}

    return World(tokenizer=wc.tokenizer, base=experts.get(wc.base, wc.base), experts=experts,
                 router_init=experts.get(wc.router_init, wc.router_init),
                 sft_data=rows_of(wc.sft_data, TRAIN_ROWS), pref_prompts=rows_of(wc.pref_prompts, TASK_ROWS),
                 dtype=wc.dtype)


def _world_tasks(cfg: SweepConfig, world: World) -> dict[str, TaskSpec]:
    """The planned tasks, with the data files a micro world provides (in the cache) for those that name none."""
    tasks = planned_tasks(cfg)
    for name, spec in tasks.items():
        if spec.data is None and name in world.tasks:
            base = world.tasks[name]
            data = str(Path(base.data).with_name(f"{spec.split}.jsonl")) if base.data else None
            tasks[name] = TaskSpec(spec.task, data, spec.limit or base.limit, base.max_new_tokens, spec.split)
    return tasks
