"""Task registry: `get_task("gsm8k", data=PATH)` returns a ready task; new benchmarks register by name."""
from __future__ import annotations

import importlib
from typing import Any, Callable

from .base import SampleResult, Task

_REGISTRY: dict[str, type[Task]] = {}
# Built-in task modules, imported on first lookup so `import fr_bench.tasks` stays cheap.
_BUILTIN_MODULES = ("gsm8k", "math500", "mbpp", "humaneval", "ifeval", "exact_match", "mixed")


def register_task(name: str) -> Callable[[type[Task]], type[Task]]:
    def deco(cls: type[Task]) -> type[Task]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def _load_builtins() -> None:
    for mod in _BUILTIN_MODULES:
        importlib.import_module(f"{__name__}.{mod}")


def task_names() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def get_task(name: str, **kwargs: Any) -> Task:
    _load_builtins()
    if name not in _REGISTRY:
        raise KeyError(f"unknown task '{name}'; known tasks: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**kwargs)


__all__ = ["SampleResult", "Task", "get_task", "register_task", "task_names"]
