"""Method registry: name -> Method class. Built-in methods live in `fr_bench.methods.*` and `baselines.*`."""
from __future__ import annotations

import importlib
from typing import Callable

from .base import Generation, Method

_REGISTRY: dict[str, type[Method]] = {}
_BUILTIN_MODULES: tuple[str, ...] = (
    "fr_bench.methods.fusionroute",
    "baselines.single_model",
    "baselines.token_confidence",
    "baselines.collab",
    "baselines.merge_method",
    "baselines.sequence_level",
    "baselines.finetuned",
)


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    def deco(cls: type[Method]) -> type[Method]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def _load_builtins() -> None:
    for mod in _BUILTIN_MODULES:
        importlib.import_module(mod)


def method_names() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def get_method_class(name: str) -> type[Method]:
    _load_builtins()
    if name not in _REGISTRY:
        raise KeyError(f"unknown method '{name}'; registered methods: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


__all__ = ["Generation", "Method", "get_method_class", "method_names", "register_method"]
