"""Preference pairs (prompt, chosen, rejected) for CDPO and for the fine-tuned baseline's DPO.

Micro world: sample the stage-1 system with temperature on the training prompts (world.pref_prompts), score every
sample with the domain's verifier (the task's `score`), pair a correct sample (chosen) with an incorrect one
(rejected). A prompt whose samples all agree yields no pair; with `gold_as_chosen`, a prompt the system never solves
pairs the row's gold response (the SFT target) with an incorrect sample, so a weak system still gets a signal.
Real use: any JSONL file or Hub dataset with prompt/chosen/rejected columns.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..world import World
from .configs import PairsConfig
from .data import read_jsonl

GenerateFn = Callable[[Sequence[dict[str, Any]], int], list[str]]  # (rows, seed) -> one sampled output per row


def build_preference_pairs(rows: Sequence[dict[str, Any]], task: Any, generate_fn: GenerateFn, n_samples: int,
                           seed: int, *, pairs_per_prompt: int = 1, gold_as_chosen: bool = False,
                           gold_field: str = "response", domain: str = "") -> tuple[list[dict], list[dict]]:
    """(pairs, per-sample log). Sample k of every row uses seed `seed + k`; all samples are scored in one call."""
    outputs = [generate_fn(rows, seed + k) for k in range(n_samples)]
    for k, out in enumerate(outputs):
        if len(out) != len(rows):
            raise ValueError(f"generate_fn returned {len(out)} outputs for {len(rows)} rows (sample {k}).")
    results = task.score(list(rows) * n_samples, [o for out in outputs for o in out])
    pairs, log = [], []
    for i, row in enumerate(rows):
        prompt = task.user_message(row)
        good, bad = [], []
        for k in range(n_samples):
            text, res = outputs[k][i], results[k * len(rows) + i]
            log.append({"domain": domain, "id": res.id, "sample": k, "correct": bool(res.correct), "output": text})
            group = good if res.correct else bad
            if text not in group:
                group.append(text)
        source = "sampled"
        if not good and bad and gold_as_chosen:
            if gold_field not in row:
                raise KeyError(f"pairs.gold_as_chosen needs the gold response in field '{gold_field}' of the "
                               f"preference rows (domain '{domain}'); row keys are {sorted(row)}. Set "
                               "pairs.gold_field or turn gold_as_chosen off.")
            good, source = [row[gold_field]], "gold"
        for chosen, rejected in list(zip(good * len(bad), bad))[:pairs_per_prompt]:
            pairs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "domain": domain,
                          "id": str(row.get("id", i)), "chosen_source": source})
    return pairs, log


def load_preference_pairs(cfg: PairsConfig) -> list[dict[str, str]]:
    """Pairs from a JSONL file or a Hub dataset; conversational columns (lists of messages) use the last turn."""
    path = Path(cfg.path)
    if path.is_file():
        rows = read_jsonl(path)
    else:
        from datasets import load_dataset

        rows = list(load_dataset(cfg.path, split=cfg.split))
    cols = {"prompt": cfg.prompt_column, "chosen": cfg.chosen_column, "rejected": cfg.rejected_column}
    pairs = []
    for n, row in enumerate(rows):
        missing = [c for c in cols.values() if c not in row]
        if missing:
            raise KeyError(f"{cfg.path} row {n}: no column(s) {missing} (has {sorted(row)}); set pairs.prompt_column/"
                           "chosen_column/rejected_column.")
        pairs.append({key: _text(row[col], key) for key, col in cols.items()})
    return pairs


def _text(value: Any, key: str) -> str:
    """A string column as is; a list of chat messages (TRL's conversational format) -> content of the last one."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], dict) and "content" in value[-1]:
        return value[-1]["content"]
    raise TypeError(f"preference column '{key}' holds {type(value).__name__}; expected a string or a list of "
                    "{role, content} messages.")


def task_for_domain(world: World, domain: str) -> Any:
    """The task that verifies `domain`: world.tasks[domain] if present, else the first task whose class domain matches."""
    from ..tasks import get_task

    specs = [world.tasks[domain]] if domain in world.tasks else list(world.tasks.values())
    for spec in specs:
        task = get_task(spec.task, data=spec.data, max_new_tokens=spec.max_new_tokens)
        if domain in world.tasks or getattr(task, "domain", None) == domain:
            return task
    raise KeyError(f"no task in world.tasks verifies domain '{domain}' (tasks: {list(world.tasks)}); add a task "
                   "keyed by the domain name or one whose class domain is that name.")


def engine_generate_fn(engine: Any, task: Any, tokenizer: Any, max_new_tokens: int, temperature: float,
                       batch_size: int = 8) -> GenerateFn:
    """A GenerateFn that samples through a `DecodeEngine` on the task's prompts and stop sequences."""

    def generate(rows: Sequence[dict[str, Any]], seed: int) -> list[str]:
        prompts = [task.prompt(row, tokenizer) for row in rows]
        decoded, _ = engine.generate(prompts, max_new_tokens, stop=task.stop_sequences, batch_size=batch_size,
                                     temperature=temperature, seed=seed)
        return [d.text for d in decoded]

    return generate


def fusionroute_engine(router: nn.Module, experts: Sequence[nn.Module], tokenizer: Any) -> Any:
    """The FusionRoute decode (router picks an expert per token, adds its own log-probs) over loaded models."""
    from ..decoding.engine import DecodeEngine
    from ..decoding.policies import FusionRoute

    return DecodeEngine([router, *experts], FusionRoute(router=0, experts=list(range(1, len(experts) + 1))), tokenizer)


def single_model_engine(lm: nn.Module, tokenizer: Any) -> Any:
    from ..decoding.engine import DecodeEngine
    from ..decoding.policies import SingleModel

    return DecodeEngine([lm], SingleModel(0), tokenizer)


@torch.no_grad()
def sample_world_pairs(world: World, cfg: PairsConfig, engine: Any, tokenizer: Any, seed: int,
                       batch_size: int = 8) -> tuple[list[dict], list[dict]]:
    """Pairs over every domain of world.pref_prompts, sampled through `engine`; capped by cfg.max_pairs (seeded)."""
    from ..tasks import get_task

    if not world.pref_prompts:
        raise ValueError("world.pref_prompts is empty: pair sampling needs training prompts with a verifier; give "
                         "pairs.source=file and pairs.path instead.")
    pairs, log = [], []
    for domain, path in world.pref_prompts.items():
        task = task_for_domain(world, domain)
        rows = get_task(task.name, data=path).load()[:cfg.max_prompts]  # through the task: rows get their ids
        gen = engine_generate_fn(engine, task, tokenizer, cfg.max_new_tokens or task.max_new_tokens, cfg.temperature,
                                 batch_size)
        got, samples = build_preference_pairs(rows, task, gen, cfg.n_samples, seed, domain=domain,
                                              pairs_per_prompt=cfg.pairs_per_prompt,
                                              gold_as_chosen=cfg.gold_as_chosen, gold_field=cfg.gold_field)
        pairs += got
        log += samples
    if cfg.max_pairs is not None and len(pairs) > cfg.max_pairs:
        random.Random(seed).shuffle(pairs)
        pairs = pairs[:cfg.max_pairs]
    return pairs, log
