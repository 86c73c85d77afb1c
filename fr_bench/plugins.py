"""Plug-ins: Python files or importable modules named by a sweep's `plugins:` key, imported in the sweep's process
and in every worker process and Ray task before any registry lookup. A plug-in registers what it defines (methods,
policies, tasks, artifacts) with the same decorators the built-ins use, so it behaves exactly like a built-in."""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Sequence

from .config import ConfigError


def module_name(path: Path) -> str:
    """The name a plug-in file is imported under: stable per absolute path, so every process agrees (pickling)."""
    return f"fr_bench_plugin_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"


def resolve_plugins(entries: Sequence[str], base_dir: str | Path) -> list[str]:
    """Check every entry now (before anything expensive): a `.py` path, relative to `base_dir` (the YAML's folder),
    becomes absolute; a module name must be importable. Returns the entries every process will import."""
    resolved = []
    for i, entry in enumerate(entries):
        if entry.endswith(".py") or "/" in entry:
            path = (Path(base_dir) / entry).resolve()
            if not path.is_file():
                raise ConfigError(f"plugins[{i}]: file '{entry}' not found (looked at {path}); paths are relative "
                                  f"to the sweep YAML's folder.")
            resolved.append(str(path))
        else:
            try:
                found = importlib.util.find_spec(entry) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                raise ConfigError(f"plugins[{i}]: no importable module '{entry}'; give a module on sys.path or the "
                                  f"path of a .py file relative to the sweep YAML.")
            resolved.append(entry)
    return resolved


def load_plugins(entries: Sequence[str]) -> None:
    """Import each resolved plug-in once per process (a file under `module_name`, a module by its name)."""
    for entry in entries:
        if not entry.endswith(".py"):
            importlib.import_module(entry)
            continue
        path = Path(entry)
        name = module_name(path)
        if name in sys.modules:
            continue
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        except BaseException:
            del sys.modules[name]
            raise
