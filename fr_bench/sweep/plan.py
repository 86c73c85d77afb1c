"""Expand a sweep config into a dependency graph: artifacts to build (each once, shared) and evaluation cells.

Keys are hashes of everything that produced a thing, so a rerun finds finished work by key and a changed config or
seed gets a new key. Nothing here trains or decodes; `fr_bench.sweep.run` executes the plan.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import inspect
from dataclasses import dataclass, field
from typing import Any

from .. import __version__
from ..artifacts import ARTIFACTS, closure, get_artifact
from ..cache import config_hash
from ..codegraph import Fingerprinter
from ..config import ConfigError, load_config, to_dict
from ..methods import get_method_class
from ..tasks import TASKS
from ..types import Method
from ..world import TaskSpec
from .config import MethodEntry, SweepConfig


@dataclass
class ArtifactNode:
    name: str
    seed: int | None          # None when the artifact is shared by every seed
    key: str
    deps: dict[str, str]      # dependency name -> its key
    config: Any               # validated dataclass instance (or None)
    code: dict[str, str] = field(default_factory=dict)   # module label -> AST hash of the code that builds it
    base_key: str = ""        # the key without any code fingerprint: the same thing across code edits

    @property
    def label(self) -> str:
        return self.name if self.seed is None else f"{self.name}[seed={self.seed}]"


@dataclass
class Cell:
    method: str               # display name (sweep YAML key)
    entry: MethodEntry
    task: str                 # display name
    spec: TaskSpec
    seed: int
    key: str
    artifacts: dict[str, str] = field(default_factory=dict)  # artifact name -> key
    seeded: bool = True
    code: dict[str, str] = field(default_factory=dict)   # module label -> AST hash (method, policy, task, scorer)
    base_key: str = ""

    @property
    def label(self) -> str:
        return f"{self.method}/{self.task}/seed{self.seed}"


@dataclass
class Plan:
    world_keys: dict[int, str]        # sweep seed -> the key of its world (one key for all unless world.seeded)
    artifacts: list[ArtifactNode]
    cells: list[Cell]

    def describe(self) -> str:
        worlds = sorted(set(self.world_keys.values()), key=list(self.world_keys.values()).index)
        lines = [f"world {worlds[0]}" if len(worlds) == 1 else
                 "worlds " + ", ".join(f"seed{s}:{k}" for s, k in self.world_keys.items()),
                 f"artifacts ({len(self.artifacts)}):"]
        for node in self.artifacts:
            deps = ", ".join(f"{d}:{k[:8]}" for d, k in node.deps.items()) or "-"
            lines.append(f"  {node.label:<34} {node.key}  <- {deps}")
        lines.append(f"cells ({len(self.cells)}):")
        for cell in self.cells:
            arts = ", ".join(sorted(cell.artifacts)) or "-"
            lines.append(f"  {cell.label:<44} {cell.key}  needs {arts}")
        return "\n".join(lines)


def artifact_config(name: str, overrides: dict[str, Any], where: str) -> Any:
    """Validate one artifact's overrides against its dataclass now, before anything expensive starts."""
    cls = get_artifact(name).config_class()
    if cls is None:
        if overrides:
            raise ConfigError(f"{where}: artifact '{name}' takes no settings; remove them.")
        return None
    try:
        conf = load_config(cls, None, extra=dict(overrides))
        if hasattr(conf, "validate"):
            # merge configs validate against their merge method, which the artifact name carries
            takes_method = len(inspect.signature(conf.validate).parameters) == 1
            conf.validate(name.removeprefix("merge_")) if takes_method else conf.validate()
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    return conf


def _check_artifact_names(names: Any, where: str) -> None:
    unknown = sorted(set(names) - set(ARTIFACTS))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: no such artifact; known: {', '.join(sorted(ARTIFACTS))}")


def method_of(entry: MethodEntry, display: str) -> Method:
    """The method with its options checked (no world: nothing is loaded), for its artifacts and its code."""
    try:
        cls = get_method_class(entry.method)
    except KeyError as exc:
        raise ConfigError(f"methods.{display}.method: {exc.args[0]}") from exc
    try:
        return cls(world=None, options=dict(entry.options), seed=0)  # type: ignore[arg-type]
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigError(f"methods.{display}.options: {exc}") from exc


def make_plan(cfg: SweepConfig, world_keys: dict[int, str], tasks: dict[str, TaskSpec]) -> Plan:
    """The plan of `cfg` in the worlds `world_keys` (`fr_bench.sweep.worlds.world_keys`). With `world.seeded` every
    artifact and cell belongs to a seed, since each seed has its own world."""
    if not cfg.methods:
        raise ConfigError("methods: the sweep names no methods; add at least one entry (see experiments/).")
    if not cfg.seeds:
        raise ConfigError("seeds: empty list; give at least one seed, e.g. seeds: [0].")
    if not tasks:
        raise ConfigError("tasks: the sweep names no tasks; add entries or use a micro world.")
    methods = {m: method_of(e, m) for m, e in cfg.methods.items()}
    requires = {m: method.requires() for m, method in methods.items()}
    fingerprints = Fingerprinter()
    _check_artifact_names(cfg.artifacts, "artifacts")
    for m, e in cfg.methods.items():
        _check_artifact_names(e.artifacts, f"methods.{m}.artifacts")
    configs: dict[tuple[str, str], Any] = {}

    def conf_of(name: str, method: str) -> Any:
        """The artifact's config for this method: the sweep-level overrides, then the method's own on top."""
        own = cfg.methods[method].artifacts.get(name)
        merged = {**cfg.artifacts.get(name, {}), **(own or {})}
        ckey = (name, config_hash(merged))
        if ckey not in configs:
            where = f"methods.{method}.artifacts.{name}" if own else f"artifacts.{name}"
            configs[ckey] = artifact_config(name, merged, where)
        return configs[ckey]

    def deps_of(name: str, method: str) -> tuple[str, ...]:
        return get_artifact(name).deps_for(conf_of(name, method))

    names = closure(sorted({a for r in requires.values() for a in r}),
                    lambda n: tuple(d for m in cfg.methods for d in deps_of(n, m)))

    nodes: dict[str, ArtifactNode] = {}  # by key, which already covers name, seed, config and dependencies

    def node(name: str, seed: int, method: str) -> ArtifactNode:
        defn, conf = get_artifact(name), conf_of(name, method)
        deps = {d: node(d, seed, method) for d in deps_of(name, method)}
        s = seed if cfg.world.seeded or defn.seeded or any(n.seed is not None for n in deps.values()) else None
        dep_keys = {d: n.key for d, n in deps.items()}
        identity = ("artifact", name, world_keys[seed], to_dict(conf) if conf is not None else None, s)
        code = fingerprints.code(defn.builder)
        key = config_hash(*identity, dep_keys, code)
        base = config_hash(*identity, {d: n.base_key for d, n in deps.items()})
        return nodes.setdefault(key, ArtifactNode(name, s, key, dep_keys, conf, code, base))

    cells: list[Cell] = []
    for display, entry in cfg.methods.items():
        for seed in cfg.seeds:
            arts = {a: node(a, seed, display) for a in closure(requires[display], lambda n: deps_of(n, display))}
            unused = sorted(set(entry.artifacts) - set(arts))
            if unused:
                raise ConfigError(f"methods.{display}.artifacts.{unused[0]}: method '{entry.method}' does not use "
                                  f"this artifact (it uses: {', '.join(arts) or 'none'}); remove the override.")
            seeded = (cfg.world.seeded or any(n.seed is not None for n in arts.values())
                      or float(entry.options.get("temperature", 0)) > 0)
            for tname, spec in tasks.items():
                limit = spec.limit if cfg.limit is None else min(x for x in (spec.limit, cfg.limit) if x is not None)
                spec = dataclasses.replace(spec, limit=limit)
                identity = ("cell", __version__, world_keys[seed], entry.method, dict(entry.options), to_dict(spec),
                            seed if seeded else None)
                code = fingerprints.code(*methods[display].code_objects(), TASKS.get(spec.task))
                key = config_hash(*identity, {a: n.key for a, n in arts.items()}, code)
                base = config_hash(*identity, {a: n.base_key for a, n in arts.items()})
                cells.append(Cell(display, entry, tname, spec, seed, key, {a: n.key for a, n in arts.items()}, seeded,
                                  code, base))
    order = {n: i for i, n in enumerate(names)}
    artifacts = sorted(nodes.values(), key=lambda n: (order[n.name], -1 if n.seed is None else n.seed, n.key))
    return Plan(world_keys, artifacts, cells)


def select(plan: Plan, pattern: str | None) -> Plan:
    """Keep the cells whose `method/task/seedN` label (or method or task name) matches the glob, and their artifacts."""
    if not pattern:
        return plan
    pats = [p.strip() for p in pattern.split(",") if p.strip()]

    def hit(cell: Cell) -> bool:
        return any(fnmatch.fnmatchcase(x, p) for p in pats for x in (cell.label, cell.method, cell.task,
                                                                      f"{cell.method}/{cell.task}"))

    cells = [c for c in plan.cells if hit(c)]
    if not cells:
        raise ConfigError(f"--only '{pattern}' matches no cell; labels look like "
                          f"'{plan.cells[0].label}' (globs allowed, comma-separated).")
    needed = {k for c in cells for k in c.artifacts.values()}
    return Plan(plan.world_keys, [n for n in plan.artifacts if n.key in needed], cells)
