"""Execute a plan: build the world, build missing artifacts in dependency order, evaluate missing cells, then
assemble `reports/<sweep>/` (tidy results, per-sample logs, lm-eval-style JSON) and render the report."""
from __future__ import annotations

import datetime as _dt
import logging
import shutil
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ..artifacts import get_artifact
from ..cache import atomic_dir, atomic_write_json, atomic_write_text, cache_root, is_complete
from ..world import TaskSpec, World
from .cells import Job, cell_dir, cell_done, read_cell
from .config import SweepConfig
from .executor import get_executor
from .plan import ArtifactNode, Plan

log = logging.getLogger("fr_bench.sweep")


def artifact_path(key: str) -> Path:
    return cache_root() / "artifacts" / key


def build_artifacts(plan: Plan, world: World, cfg: SweepConfig, force: bool = False) -> int:
    built = 0
    for node in plan.artifacts:
        path = artifact_path(node.key)
        if is_complete(path) and not force:
            continue
        if force and path.exists():
            shutil.rmtree(path)
        log.info("building %s -> %s", node.label, path)
        deps = {name: artifact_path(key) for name, key in node.deps.items()}
        with atomic_dir(path) as tmp:
            get_artifact(node.name).build(world, _with_executor(node, cfg), deps, tmp, 0 if node.seed is None else node.seed)
            atomic_write_json(tmp / "artifact.json", {"name": node.name, "seed": node.seed, "key": node.key,
                                                      "deps": node.deps})
        built += 1
    return built


def _with_executor(node: ArtifactNode, cfg: SweepConfig) -> Any:
    """Pass Lightning's devices/strategy/num_nodes through to training stages whose config has those fields."""
    conf = node.config
    for field in ("devices", "strategy", "num_nodes"):
        if conf is not None and hasattr(conf, field):
            setattr(conf, field, getattr(cfg.executor, field))
    return conf


def make_jobs(plan: Plan, world: World, cfg: SweepConfig, force: bool) -> list[Job]:
    groups: dict[tuple[str, int], Job] = {}
    for cell in plan.cells:
        if force and cell_dir(cell.key).exists():
            shutil.rmtree(cell_dir(cell.key))
        if cell_done(cell.key):
            continue
        seed = cell.seed if cell.seeded else 0
        gkey = (cell.method, seed)
        if gkey not in groups:
            groups[gkey] = Job(world, cell.method, cell.entry.method, dict(cell.entry.options), seed,
                               {a: str(artifact_path(k)) for a, k in cell.artifacts.items()}, [], cfg.batch_size,
                               str(cache_root()), cfg.threads)
        if all(c[0] != cell.key for c in groups[gkey].cells):  # unseeded cells share one key across seeds
            resolved = world.tasks[cell.task]  # the world knows where its data lives (micro: in the cache)
            spec = TaskSpec(cell.spec.task, cell.spec.data or resolved.data, cell.spec.limit or resolved.limit,
                            resolved.max_new_tokens if cell.spec.data is None else cell.spec.max_new_tokens)
            groups[gkey].cells.append((cell.key, cell.task, spec))
    return list(groups.values())


def run_cells(plan: Plan, world: World, cfg: SweepConfig, force: bool = False, progress: bool = True) -> int:
    from tqdm.auto import tqdm

    jobs = make_jobs(plan, world, cfg, force)
    total = sum(len(j.cells) for j in jobs)
    bar = tqdm(total=total, desc="cells", unit="cell", disable=not progress or total == 0)
    for finished in get_executor(cfg.executor)(jobs):
        bar.update(len(finished))
    bar.close()
    return total


def assemble(plan: Plan, world: World, cfg: SweepConfig, out_dir: Path) -> Path:
    """Write results.jsonl, samples/, lm-eval-style results.json, config.yaml and meta.json from finished cells."""
    from ..reports.schema import ResultRow, SweepMeta, write_meta, write_results, write_samples

    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[ResultRow] = []
    lm_eval: dict[str, Any] = {}
    for cell in plan.cells:
        if not cell_done(cell.key):
            continue
        result, samples = read_cell(cell.key)
        rows.append(ResultRow.from_json({**result, "sweep": cfg.name, "method": cell.method, "seed": cell.seed,
                                         "method_group": cell.entry.group}, f"cell {cell.label}"))
        write_samples(out_dir, cell.method, cell.task, cell.seed, samples)
        lm_eval.setdefault(cell.method, {}).setdefault(cell.task, {})[f"seed{cell.seed}"] = {
            **{f"{k},none": v for k, v in result["metrics"].items()}, "alias": cell.task, "n": result["n"]}
    write_results(out_dir, rows)
    container = OmegaConf.to_container(OmegaConf.structured(cfg))
    atomic_write_json(out_dir / "results.json", {"results": lm_eval, "config": container})
    atomic_write_text(out_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    write_meta(out_dir, SweepMeta(sweep=cfg.name, expert_names=world.expert_names,
                                  reference_method=cfg.reference_method, methods=list(cfg.methods),
                                  tasks=list(world.tasks), seeds=list(cfg.seeds),
                                  created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")))
    return out_dir


def render(out_dir: Path) -> None:
    from ..reports.report_md import render_report

    render_report(out_dir)
