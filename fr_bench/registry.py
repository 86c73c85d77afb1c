"""One registry type for every kind of named thing: methods, tasks, decode policies and artifacts.

Registration happens where the thing is defined, by a decorator (`@register_method("x")`, `@register_policy("y")`).
Lookups first import the built-in packages (`BUILTIN_PACKAGES`, the one place that says where built-ins live) and
then find plug-ins the same way, because a plug-in module registers itself when it is imported
(`fr_bench.plugins`). A second registration under a taken name is an error naming both definitions.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")

# Packages whose modules (all of them, recursively) hold the built-in methods, tasks, policies and artifacts.
# Importing them registers everything; `baselines` depends on fr_bench, never the other way round.
BUILTIN_PACKAGES: tuple[str, ...] = ("fr_bench.tasks", "fr_bench.decoding", "fr_bench.methods",
                                     "fr_bench.training.artifacts", "baselines")
_builtins_loaded = False


class RegistryError(ValueError):
    """A name registered twice, or an object of the wrong type."""


def load_builtins() -> None:
    """Import every module of `BUILTIN_PACKAGES` once per process (each registers what it defines)."""
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True   # set first: a module being imported may itself look things up
    for name in BUILTIN_PACKAGES:
        package = importlib.import_module(name)
        for info in pkgutil.walk_packages(getattr(package, "__path__", []), prefix=f"{name}."):
            if not info.name.rpartition(".")[2].startswith("__"):
                importlib.import_module(info.name)


def where(obj: Any) -> str:
    """Where an object is defined, as a person finds it: `module:qualname (file:line)`."""
    target = inspect.unwrap(obj)
    name = f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', type(target).__qualname__)}"
    try:
        return f"{name} ({inspect.getsourcefile(target)}:{inspect.getsourcelines(target)[1]})"
    except (TypeError, OSError):
        return name


class Registry(Generic[T]):
    """Name -> object of one kind. `base` (optional) is the class every registered class must subclass."""

    def __init__(self, kind: str, base: type | None = None) -> None:
        self.kind = kind
        self.base = base
        self._items: dict[str, T] = {}
        self._where: dict[str, str] = {}

    def add(self, name: str, obj: T, defined_at: Any = None) -> T:
        """Register `obj` under `name`; `defined_at` is what `where` reports (default: the object itself)."""
        if self.base is not None and not (isinstance(obj, type) and issubclass(obj, self.base)):
            raise RegistryError(f"{self.kind} '{name}': {where(obj)} is not a subclass of {self.base.__qualname__}")
        place = where(obj if defined_at is None else defined_at)
        if name in self._items and self._where[name] != place:
            raise RegistryError(f"{self.kind} '{name}' is registered twice: {self._where[name]} and {place}; "
                                f"rename one of them")
        self._items[name] = obj
        self._where[name] = place
        return obj

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: `@registry.register("name")` on the class or function to register."""
        return lambda obj: self.add(name, obj)

    def get(self, name: str) -> T:
        load_builtins()
        if name not in self._items:
            raise KeyError(f"unknown {self.kind} '{name}'; registered: {', '.join(self.names()) or 'none'}")
        return self._items[name]

    def names(self) -> list[str]:
        load_builtins()
        return sorted(self._items)

    def where(self, name: str) -> str:
        self.get(name)
        return self._where[name]

    def __contains__(self, name: object) -> bool:
        load_builtins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
