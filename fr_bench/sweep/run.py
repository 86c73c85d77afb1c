"""Execute a plan: build missing artifacts in dependency order and evaluate missing cells (one task graph, run by
the sweep's executor), then assemble `reports/<sweep>/` (tidy results, per-sample logs, lm-eval-style JSON) and
render the report."""
from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import shutil
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ..artifacts import get_artifact
from ..cache import atomic_dir, atomic_write_json, atomic_write_text, cache_root, is_complete
from ..world import TaskSpec, World
from .cells import Job, cell_dir, cell_done, read_cell, run_job
from .config import SweepConfig
from .executor import Executor, Task, longest_chains_first, open_executor, prepare_task_process, run_tasks
from .plan import ArtifactNode, Plan

log = logging.getLogger("fr_bench.sweep")


def artifact_path(key: str) -> Path:
    return cache_root() / "artifacts" / key


def build_artifact(node: ArtifactNode, world: World, deps: dict[str, Path], cache: str, threads: int,
                   force: bool) -> None:
    """Build one artifact into the cache (atomically); runs in whichever process the executor picked."""
    prepare_task_process(cache, threads)
    path = artifact_path(node.key)
    if force and path.exists():
        shutil.rmtree(path)
    log.info("building %s -> %s", node.label, path)
    with atomic_dir(path) as tmp:
        get_artifact(node.name).build(world, node.config, deps, tmp, 0 if node.seed is None else node.seed)
        atomic_write_json(tmp / "artifact.json", {"name": node.name, "seed": node.seed, "key": node.key,
                                                  "deps": node.deps})


def execute(plan: Plan, worlds: dict[int, World], cfg: SweepConfig, executor: Executor | None = None, *, artifacts: bool = True,
            cells: bool = True, force_train: bool = False, force: bool = False,
            progress: bool = True) -> tuple[int, int]:
    """Build the missing artifacts and evaluate the missing cells as one task graph; return how many of each.

    Tasks with the longest chains of dependants go first (`longest_chains_first`), so every artifact precedes the
    evaluation jobs that need it: in one process that is build-everything-then-evaluate, with worker processes a job
    starts as soon as its artifacts exist, filling workers that would otherwise wait on the last trainings.
    `worlds` maps each sweep seed to its world (`resolve_worlds`); an artifact shared by every seed (world not
    seeded) sees the first seed's, which is every seed's. `force_train` rebuilds the artifacts, `force` re-evaluates
    the cells."""
    from tqdm.auto import tqdm

    tasks: list[Task] = []
    for node in plan.artifacts if artifacts else []:
        if force_train or not is_complete(artifact_path(node.key)):
            _with_executor(node, cfg)
            deps = {name: artifact_path(key) for name, key in node.deps.items()}
            tasks.append(Task(f"artifact {node.label}", node.key, set(node.deps.values()), build_artifact,
                              (node, worlds[cfg.seeds[0] if node.seed is None else node.seed], deps,
                               str(cache_root()), cfg.threads, force_train),
                              cfg.executor.num_cpus_per_artifact, cfg.executor.num_gpus_per_artifact))
    built = len(tasks)
    jobs = make_jobs(plan, worlds, cfg, force) if cells else []
    for i, (job, deps) in enumerate(jobs):
        tasks.append(Task(f"cells {job.method_display}/seed{job.seed}", f"job{i}", deps, run_job, (job,),
                          cfg.executor.num_cpus_per_cell, cfg.executor.num_gpus_per_cell))
    total = sum(len(job.cells) for job, _ in jobs)
    # one bar for the artifacts and one for the cells, each with tqdm's rate and ETA
    art_bar = tqdm(total=built, desc="artifacts", unit="artifact", disable=not progress or built == 0, position=0)
    bar = tqdm(total=total, desc="cells", unit="cell", disable=not progress or total == 0, position=1)
    with contextlib.nullcontext(executor) if executor is not None else open_executor(cfg.executor, cfg.threads, tuple(cfg.plugins)) as ex:
        for task, result in run_tasks(ex, longest_chains_first(tasks)):
            if task.fn is run_job:
                bar.update(len(result))
            else:
                art_bar.update(1)
    art_bar.close()
    bar.close()
    return built, total


def _with_executor(node: ArtifactNode, cfg: SweepConfig) -> None:
    """Pass Lightning's devices/strategy/num_nodes through to training stages whose config has those fields."""
    conf = node.config
    for field in ("devices", "strategy", "num_nodes"):
        if conf is not None and hasattr(conf, field):
            setattr(conf, field, getattr(cfg.executor, field))


def make_jobs(plan: Plan, worlds: dict[int, World], cfg: SweepConfig, force: bool) -> list[tuple[Job, set[str]]]:
    """The evaluation jobs (a method for one seed on its pending cells), each with the keys of the artifacts it
    needs."""
    groups: dict[tuple[str, int], tuple[Job, set[str]]] = {}
    for cell in plan.cells:
        if force and cell_dir(cell.key).exists():
            shutil.rmtree(cell_dir(cell.key))
        if cell_done(cell.key):
            continue
        seed = cell.seed if cell.seeded else 0
        world = worlds[cell.seed]   # an unseeded cell's world is every seed's
        gkey = (cell.method, seed)
        if gkey not in groups:
            groups[gkey] = (Job(world, cell.method, cell.entry.method, dict(cell.entry.options), seed,
                                {a: str(artifact_path(k)) for a, k in cell.artifacts.items()}, [], cfg.batch_size,
                                str(cache_root()), cfg.threads), set(cell.artifacts.values()))
        job = groups[gkey][0]
        if all(c[0] != cell.key for c in job.cells):  # unseeded cells share one key across seeds
            resolved = world.tasks[cell.task]  # the world knows where its data lives (micro: in the cache)
            spec = TaskSpec(cell.spec.task, cell.spec.data or resolved.data, cell.spec.limit or resolved.limit,
                            resolved.max_new_tokens if cell.spec.data is None else cell.spec.max_new_tokens,
                            cell.spec.split)
            job.cells.append((cell.key, cell.task, spec))
    return list(groups.values())


def assemble(plan: Plan, world: World, cfg: SweepConfig, out_dir: Path) -> Path:
    """Write results.jsonl, samples/, lm-eval-style results.json, config.yaml and meta.json from finished cells,
    then re-attach the cached judge verdicts the folder's judge.json names (`reports.judge.attach_judged`)."""
    from .. import provenance
    from ..reports.judge import attach_judged
    from ..reports.schema import ResultRow, SweepMeta, write_meta, write_results, write_samples

    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[ResultRow] = []
    lm_eval: dict[str, Any] = {}
    for cell in plan.cells:
        if not cell_done(cell.key):
            continue
        result, samples = read_cell(cell.key)
        rows.append(ResultRow.from_json({**result, "sweep": cfg.name, "method": cell.method, "seed": cell.seed,
                                         "method_group": cell.entry.group, "seeded": cell.seeded},
                                        f"cell {cell.label}"))
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
                                  created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                                  provenance=provenance.collect(cfg.threads),
                                  method_notes={m: e.note for m, e in cfg.methods.items() if e.note}))
    if rows and (attached := attach_judged(out_dir)):
        log.info("re-attached %d cached judge run(s) to %s", attached, out_dir)
    return out_dir


def render(out_dir: Path) -> None:
    from ..reports.report_md import render_report

    render_report(out_dir)
