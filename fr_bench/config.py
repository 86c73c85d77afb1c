"""Structured configs: dataclasses are the schema, YAML files and `key=value` overrides only fill them in.

Every failure (unknown key, wrong type, missing required field) is raised as `ConfigError` naming the key's full
path and the file, before any expensive work starts.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence, TypeVar

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

T = TypeVar("T")

__all__ = ["MISSING", "ConfigError", "load_config", "to_dict"]


class ConfigError(ValueError):
    """A config problem, phrased as: where (file, key), what is wrong, how to fix it."""


def _where(source: str, key: str | None) -> str:
    return f"{source}: key '{key}'" if key else source


def _translate(exc: OmegaConfBaseException, source: str, schema: type) -> ConfigError:
    key = getattr(exc, "full_key", None) or None
    if isinstance(exc, ConfigKeyError):
        return ConfigError(
            f"{_where(source, key)} is not a known setting of {schema.__name__}; "
            f"check the spelling or remove it (the dataclass {schema.__module__}.{schema.__name__} lists every key)."
        )
    if isinstance(exc, ValidationError):
        return ConfigError(f"{_where(source, key)} has the wrong type or value: {exc.msg}. Fix the value in {source}.")
    return ConfigError(f"{_where(source, key)}: {getattr(exc, 'msg', exc)}")


def load_config(schema: type[T], path: str | Path | None = None, overrides: Sequence[str] = (),
                extra: dict[str, Any] | None = None) -> T:
    """Build a `schema` instance from defaults <- YAML file <- `extra` dict <- `key=value` overrides."""
    cfg: DictConfig = OmegaConf.structured(schema)
    layers: list[tuple[str, Any]] = []
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file '{path}' does not exist; pass the path of a YAML file (see experiments/).")
        try:
            layers.append((str(path), OmegaConf.load(path)))
        except Exception as exc:  # yaml syntax errors
            raise ConfigError(f"{path}: not valid YAML ({exc}).") from exc
    if extra:
        layers.append(("<extra>", OmegaConf.create(extra)))
    for ov in overrides:
        if "=" not in ov:
            raise ConfigError(f"override '{ov}' is not of the form key=value (e.g. seeds=[0,1]).")
        try:
            layers.append((f"override '{ov}'", OmegaConf.from_dotlist([ov])))
        except OmegaConfBaseException as exc:
            raise ConfigError(f"override '{ov}' could not be parsed: {exc}") from exc
    for source, layer in layers:
        try:
            cfg = OmegaConf.merge(cfg, layer)
        except OmegaConfBaseException as exc:
            raise _translate(exc, source, schema) from exc
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        src = str(path) if path is not None else "<defaults>"
        raise ConfigError(f"{src}: required key(s) {', '.join(repr(m) for m in missing)} not set; "
                          f"add them to the YAML or pass key=value on the command line.")
    try:
        return OmegaConf.to_object(cfg)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        raise _translate(exc, str(path), schema) from exc


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-dict view of a dataclass config (for hashing and for writing next to results)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]
