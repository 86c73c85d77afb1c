"""Generators of the micro world's tasks, one module per domain, rows in the real benchmarks' schemas.

Every generator is a function `sample(rng) -> Sample`: one task row in the schema of the benchmark that scores it
(GSM8K, MBPP, IFEval, exact match; a mixed row carries several of these checks), the gold response a model is
trained on, and a `group` key. Splits are made per group, so a test question (or a test function description)
never appears, even with other numbers or asserts, in the training split.
"""
from __future__ import annotations

import random
from typing import Callable

from . import arithmetic, constraints, functions, lookup, mixed
from .base import Sample

DOMAINS: tuple[str, ...] = ("math", "code", "if", "general", "mixed")

# domain -> (task that scores its rows, sampler)
GENERATORS: dict[str, tuple[str, Callable[[random.Random], Sample]]] = {
    "math": ("gsm8k", arithmetic.sample),
    "code": ("mbpp", functions.sample),
    "if": ("ifeval", constraints.sample),
    "general": ("exact_match", lookup.sample),
    "mixed": ("mixed", mixed.sample),
}


def _domain_seed(seed: int, domain: str) -> int:
    return seed * 1_000_003 + DOMAINS.index(domain)


def generate_splits(domain: str, seed: int, n_test: int, n_validation: int, n_train: int,
                    max_tries_factor: int = 50) -> dict[str, list[Sample]]:
    """Deterministic test/validation/train splits of one domain.

    Test and validation take one row per group, each group new; train takes any row whose group is not held out,
    skipping exact duplicates. A domain whose pool runs out (code has a few hundred function descriptions) keeps
    repeating its train groups with new asserts; the held-out splits never share a group with train.
    """
    if domain not in GENERATORS:
        raise KeyError(f"unknown micro domain '{domain}'; choose from {', '.join(DOMAINS)}")
    _, sampler = GENERATORS[domain]
    rng = random.Random(_domain_seed(seed, domain))
    sizes = {"test": n_test, "validation": n_validation, "train": n_train}
    out: dict[str, list[Sample]] = {n: [] for n in sizes}
    group_split: dict[str, str] = {}
    seen: set[str] = set()
    for _ in range(max_tries_factor * max(sum(sizes.values()), 1)):
        if all(len(out[n]) >= sizes[n] for n in sizes):
            break
        s = sampler(rng)
        split = group_split.get(s.group)
        if split is None:
            split = group_split[s.group] = next(n for n in sizes if len(out[n]) < sizes[n])
        elif split != "train":
            continue  # held-out splits keep one row per group
        key = repr(sorted(s.row.items())) + s.response
        if key in seen or len(out[split]) >= sizes[split]:
            continue
        seen.add(key)
        out[split].append(s)
    return out


__all__ = ["DOMAINS", "GENERATORS", "Sample", "generate_splits"]
