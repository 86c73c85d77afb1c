"""Build the micro world: data -> tokenizer -> base (`base_domains`) -> one expert per expert domain -> table.

Each artifact lives under `$FR_BENCH_CACHE/<kind>/<hash>/`, the hash covering its own config and the hash of the
artifact it starts from, and is written through `atomic_dir`, so a second build reuses everything and an interrupted
one leaves nothing that a later build would trust. `info["built"]` names what this call actually trained.
"""
from __future__ import annotations

import functools
import json
import logging
import time
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from pathlib import Path
from typing import Any

import torch

from ..cache import atomic_dir, atomic_write_json, cache_root, config_hash, is_complete
from ..config import to_dict
from ..training.data import load_pairs, read_jsonl
from ..training.lm import LMTrainConfig, fit_causal_lm
from ..world import TaskSpec, World
from .config import EXPERT_DOMAINS, MicroConfig
from .data import build_data, task_name
from .generators import DOMAINS
from .tokenizer import train_tokenizer

log = logging.getLogger(__name__)

MODELS = ("base",) + tuple(f"expert_{d}" for d in EXPERT_DOMAINS)
TASK_NAMES = {d: f"micro_{d}" for d in DOMAINS}  # display names of the evaluation tasks in World.tasks
# Settings that change how a run reports, not what it trains: left out of artifact hashes.
_REPORT_ONLY = ("progress_bar", "tensorboard", "log_every_n_steps")


def train_key(cfg: LMTrainConfig) -> dict[str, Any]:
    return {k: v for k, v in to_dict(cfg).items() if k not in _REPORT_ONLY}


@functools.cache
def world_code() -> dict[str, str]:
    """Fingerprint of the code that builds the world (this module and the project modules it imports at the top:
    training loop, data, tokenizer, generators): part of every model's key, so a code edit retrains the world."""
    from ..codegraph import Fingerprinter

    return Fingerprinter().code(build_micro_worlds)


@functools.cache
def table_code() -> dict[str, str]:
    """Fingerprint of the code behind the specialisation table's evaluations (decode engine, methods, scorers)."""
    from ..codegraph import Fingerprinter
    from .evaluate import evaluate_model

    return Fingerprinter().code(evaluate_model)


def _artifact(kind: str, *parts: Any) -> tuple[Path, str]:
    key = config_hash(kind, *parts)
    return cache_root() / kind / key, key


def build_tokenizer(cfg: MicroConfig, data_dir: Path, data_hash: str) -> tuple[Path, str, bool]:
    path, key = _artifact("micro_tokenizer", to_dict(cfg.tokenizer), data_hash, world_code())
    if is_complete(path):
        return path, key, False
    texts = [r["prompt"] + "\n" + r["response"]
             for d in DOMAINS for r in load_pairs([data_dir / "sft" / d / "train.jsonl"])]
    with atomic_dir(path) as tmp:
        train_tokenizer(texts, cfg.tokenizer.vocab_size, cfg.tokenizer.numbers,
                        cfg.tokenizer.cross_word).save_pretrained(str(tmp))
    return path, key, True


def new_model(cfg: MicroConfig, tokenizer: Any) -> torch.nn.Module:
    """A randomly initialised LlamaForCausalLM of the configured shape (seeded)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    m = cfg.model
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=m.hidden_size, intermediate_size=m.intermediate_size,
        num_hidden_layers=m.num_hidden_layers, num_attention_heads=m.num_attention_heads,
        num_key_value_heads=m.num_key_value_heads, max_position_embeddings=m.max_position_embeddings,
        rope_theta=m.rope_theta, tie_word_embeddings=m.tie_word_embeddings, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(m.init_seed)
    return LlamaForCausalLM(config)


def _train_and_save(path: Path, model: torch.nn.Module, tokenizer: Any, train_rows: list[dict[str, str]],
                    val_rows: list[dict[str, str]], train_cfg: LMTrainConfig, name: str, meta: dict[str, Any]) -> None:
    with atomic_dir(path) as tmp:
        result = fit_causal_lm(model, tokenizer, train_rows, val_rows, train_cfg, tmp / "logs", name)
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        atomic_write_json(tmp / "train_info.json", {**meta, "name": name, "result": vars(result),
                                                     "params": sum(p.numel() for p in model.parameters())})
    log.info("%s: %d steps, %d tokens, %.1fs, train loss %.3f, val loss %s", name, result.steps, result.tokens,
             result.seconds, result.train_loss, result.val_loss)


def model_artifacts(cfg: MicroConfig, tok_key: str) -> tuple[dict[str, Path], dict[str, str]]:
    """Cache paths and hashes of the base and the experts of `cfg` (nothing is trained)."""
    paths: dict[str, Path] = {}
    keys: dict[str, str] = {}
    paths["base"], keys["base"] = _artifact("micro_base", to_dict(cfg.model), train_key(cfg.base), tok_key,
                                            cfg.base_domains, world_code())
    for d in EXPERT_DOMAINS:
        paths[f"expert_{d}"], keys[f"expert_{d}"] = _artifact("micro_expert", d, train_key(cfg.expert_train(d)),
                                                              keys["base"], *_replay_key(cfg, d))
    return paths, keys


def build_models(cfgs: list[MicroConfig], data_dir: Path, tok_dir: Path, tok_key: str, built: list[str],
                 pool: Executor | None = None) -> list[tuple[dict[str, Path], dict[str, str]]]:
    """Paths and hashes of the base and the experts of each config (worlds that share data and tokenizer), training
    the ones not in the cache.

    With a process `pool`, the bases train on it at once and a world's experts are submitted as soon as its base
    exists (an expert depends only on its base), so they fill workers while other bases still train; each run has
    its config's torch threads and seeds itself, so the weights equal those of a serial build. A model that fails
    is raised after everything else that could train finished (and was cached)."""
    arts = [model_artifacts(cfg, tok_key) for cfg in cfgs]
    todo, seen = [], set()
    for cfg, (paths, keys) in zip(cfgs, arts):
        for name in MODELS:
            if not is_complete(paths[name]) and paths[name] not in seen:
                seen.add(paths[name])
                todo.append((name, cfg, paths, keys))
    if pool is None:
        for name, cfg, paths, keys in todo:
            _train_model(name, cfg, data_dir, tok_dir, tok_key, paths, keys)
            built.append(name)
        return arts

    def submit(i: int) -> Future:
        name, cfg, paths, keys = todo[i]
        return pool.submit(_train_model, name, cfg, data_dir, tok_dir, tok_key, paths, keys)

    # the bases on the pool too: a worker that then trains an expert imports Lightning once, this process never
    waiting: dict[Path, list[int]] = {}     # a base's folder -> the experts to submit once it exists
    running: dict[Future, int] = {}
    for i, (name, _, paths, _) in enumerate(todo):
        if name == "base" or is_complete(paths["base"]):
            running[submit(i)] = i
        else:
            waiting.setdefault(paths["base"], []).append(i)
    finished, failures = set(), []
    while running:
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for fut in done:
            i = running.pop(fut)
            name, _, paths, _ = todo[i]
            if (exc := fut.exception()) is not None:
                failures.append((name, exc))
                continue
            finished.add(i)
            for j in waiting.pop(paths[name], []) if name == "base" else []:
                running[submit(j)] = j
    built += [todo[i][0] for i in sorted(finished)]
    if failures:
        name, exc = failures[0]
        raise RuntimeError(f"micro world: training {name} failed: {type(exc).__name__}: {exc}") from exc
    return arts


def _replay_key(cfg: MicroConfig, domain: str) -> tuple[Any, ...]:
    """What of the replay setting shapes expert `domain`'s data (nothing without replay: older hashes stay valid)."""
    others = [d for d in cfg.replay_domains if d != domain]
    key = ("replay", cfg.expert_replay, others) if cfg.expert_replay > 0 and others else ()
    return key + (("mixed_segments",) if cfg.expert_mixed_segments else ())


def expert_rows(cfg: MicroConfig, data_dir: Path, domain: str) -> list[dict[str, str]]:
    """An expert's training rows: its own domain's, then the first `expert_replay` x that many of every other
    replayed domain, then (with `expert_mixed_segments`) the mixed rows it writes a part of, trained on that part
    only (the trainer shuffles)."""
    sft = data_dir / "sft"
    rows = load_pairs([sft / domain / "train.jsonl"])
    n = round(cfg.expert_replay * len(rows))
    for other in (d for d in cfg.replay_domains if d != domain and n > 0):
        rows += load_pairs([sft / other / "train.jsonl"])[:n]
    if cfg.expert_mixed_segments:
        for row in read_jsonl(sft / "mixed" / "train.jsonl"):
            spans = [(s["text"], s["domain"] == domain) for s in row["segments"]]
            if any(keep for _, keep in spans):
                rows.append({"prompt": row["prompt"], "response": row["response"], "spans": spans})
    return rows


def _train_model(name: str, cfg: MicroConfig, data_dir: Path, tok_dir: Path, tok_key: str, paths: dict[str, Path],
                 keys: dict[str, str]) -> None:
    """Train one model of the world (the base from scratch, an expert from the base) into its cache folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if cfg.threads:  # again: a pool worker starts with its pool's thread count
        torch.set_num_threads(cfg.threads)
    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    if name == "base":
        model, domains, meta = new_model(cfg, tokenizer), list(cfg.base_domains), {"tokenizer": tok_key}
        train_cfg = cfg.base
    else:
        domain = name.removeprefix("expert_")
        model = AutoModelForCausalLM.from_pretrained(str(paths["base"]))
        domains, meta, train_cfg = [domain], {"base": keys["base"]}, cfg.expert_train(domain)
    sft = data_dir / "sft"
    rows = load_pairs([sft / d / "train.jsonl" for d in domains]) if name == "base" else expert_rows(
        cfg, data_dir, domains[0])
    _train_and_save(paths[name], model, tokenizer, rows, load_pairs([sft / d / "validation.jsonl" for d in domains]),
                    train_cfg, name, {"domains": domains, **meta, "train_rows": len(rows)})


def micro_tasks(cfg: MicroConfig, data_dir: Path, split: str) -> dict[str, TaskSpec]:
    """The micro tasks by display name, reading `split` (the sweep reads test; the build's table validation)."""
    return {TASK_NAMES[d]: TaskSpec(task_name(d), data=str(data_dir / d / f"{split}.jsonl"),
                                    max_new_tokens=cfg.eval.max_new_tokens[d]) for d in DOMAINS}


def make_world(cfg: MicroConfig, data_dir: Path, tok_dir: Path, paths: dict[str, Path]) -> World:
    return World(
        tokenizer=str(tok_dir), base=str(paths["base"]),
        experts={d: str(paths[f"expert_{d}"]) for d in EXPERT_DOMAINS},
        router_init=str(paths[cfg.router_init]),
        sft_data={d: str(data_dir / "sft" / d / "router.jsonl") for d in DOMAINS},
        pref_prompts={d: str(data_dir / "pref" / f"{d}.jsonl") for d in DOMAINS},
        tasks=micro_tasks(cfg, data_dir, "test"),
    )


def build_micro_world(cfg: MicroConfig, pool: Executor | None = None) -> tuple[World, dict[str, Any]]:
    """Build (or find in the cache) every artifact of the micro world described by `cfg`; with a process `pool`
    (`fr_bench.parallel.WorkerPool`) the experts train at once, to the same weights as a serial build.

    Returns the World and `info`: `built` (artifacts made by this call, in order), `paths`, `keys` (artifact
    hashes) and `seconds` per stage.
    """
    return build_micro_worlds([cfg], pool)[0]


def build_micro_worlds(cfgs: list[MicroConfig], pool: Executor | None = None) -> list[tuple[World, dict[str, Any]]]:
    """`build_micro_world` for several configs that differ only in training (`MicroConfig.for_seed`): one data set
    and tokenizer, and every missing model trained on the pool (`build_models`: the bases at once, each world's experts
    as soon as its base exists)."""
    for cfg in cfgs:
        cfg.validate()
    first = cfgs[0]
    if any(to_dict(c.data) != to_dict(first.data) or to_dict(c.tokenizer) != to_dict(first.tokenizer) for c in cfgs):
        raise ValueError("build_micro_worlds: the configs must share data and tokenizer settings")
    if first.threads:
        torch.set_num_threads(first.threads)
    built: list[str] = []
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    data_dir, data_hash, made = build_data(first.data)
    built += ["data"] if made else []
    seconds["data"] = time.perf_counter() - t
    t = time.perf_counter()
    tok_dir, tok_key, made = build_tokenizer(first, data_dir, data_hash)
    built += ["tokenizer"] if made else []
    seconds["tokenizer"] = time.perf_counter() - t
    t = time.perf_counter()
    arts = build_models(cfgs, data_dir, tok_dir, tok_key, built, pool)
    seconds["models"] = time.perf_counter() - t
    worlds = []
    for cfg, (paths, keys) in zip(cfgs, arts):
        info = {"built": list(built), "seconds": dict(seconds),
                "paths": {"data": str(data_dir), "tokenizer": str(tok_dir), **{k: str(v) for k, v in paths.items()}},
                "keys": {"data": data_hash, "tokenizer": tok_key, **keys}}
        worlds.append((make_world(cfg, data_dir, tok_dir, paths), info))
    return worlds


def specialisation_table(cfg: MicroConfig, world: World, info: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Primary metric of each model (base and experts) on each domain's VALIDATION split, cached per model and data.

    Every world setting is chosen on this table; only the sweep reads the test split."""
    from dataclasses import replace

    from .evaluate import evaluate_model

    val_world = replace(world, tasks=micro_tasks(cfg, Path(info["paths"]["data"]), "validation"))
    table: dict[str, dict[str, float]] = {}
    start = time.perf_counter()
    for name in MODELS:
        path, _ = _artifact("micro_eval", info["keys"][name], info["keys"]["data"], to_dict(cfg.eval), "validation",
                            table_code())
        if not is_complete(path):
            with atomic_dir(path) as tmp:
                summary = evaluate_model(val_world, name.removeprefix("expert_"), cfg.eval.batch_size, tmp)
                atomic_write_json(tmp / "summary.json", summary)
            info["built"].append(f"eval_{name}")
        else:
            log.debug("eval_%s: in the cache at %s", name, path)
        summary = json.loads((path / "summary.json").read_text())
        table[name] = {d: summary[TASK_NAMES[d]]["primary"] for d in DOMAINS}
    info["seconds"]["eval"] = time.perf_counter() - start
    return table


def format_table(table: dict[str, dict[str, float]]) -> str:
    """Validation accuracy (%) per model (rows) and domain (columns)."""
    lines = ["model (validation)" + "".join(f"{d:>9}" for d in DOMAINS)]
    lines += [f"{m:<18}" + "".join(f"{100 * row[d]:>9.1f}" for d in DOMAINS) for m, row in table.items()]
    return "\n".join(lines)
