"""Method registry: name -> Method class. A method registers itself where it is defined, with
`@register_method("name")` (built-ins in `fr_bench.methods` and `baselines`, others in plug-ins)."""
from __future__ import annotations

from typing import Callable

from ..registry import Registry
from ..types import Generation, Method

METHODS: Registry[type[Method]] = Registry("method", Method)


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    def deco(cls: type[Method]) -> type[Method]:
        cls.name = name
        return METHODS.add(name, cls)

    return deco


def method_names() -> list[str]:
    return METHODS.names()


def get_method_class(name: str) -> type[Method]:
    return METHODS.get(name)


__all__ = ["METHODS", "Generation", "Method", "get_method_class", "method_names", "register_method"]
