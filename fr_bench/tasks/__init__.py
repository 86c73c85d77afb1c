"""Task registry: `get_task("gsm8k", data=PATH)` returns a ready task; a benchmark registers itself where it is
defined, with `@register_task("name")` (built-ins in this package, others in plug-ins)."""
from __future__ import annotations

from typing import Any, Callable

from ..registry import Registry
from .base import SampleResult, Task

TASKS: Registry[type[Task]] = Registry("task", Task)


def register_task(name: str) -> Callable[[type[Task]], type[Task]]:
    def deco(cls: type[Task]) -> type[Task]:
        cls.name = name
        return TASKS.add(name, cls)

    return deco


def task_names() -> list[str]:
    return TASKS.names()


def get_task(name: str, **kwargs: Any) -> Task:
    return TASKS.get(name)(**kwargs)


__all__ = ["TASKS", "SampleResult", "Task", "get_task", "register_task", "task_names"]
