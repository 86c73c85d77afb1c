from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from fr_bench.config import MISSING, ConfigError, load_config


@dataclass
class Inner:
    lr: float = 1e-3
    steps: int = 10


@dataclass
class Outer:
    name: str = MISSING
    seeds: list[int] = field(default_factory=lambda: [0])
    train: Inner = field(default_factory=Inner)


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_yaml_and_overrides_fill_the_dataclass(tmp_path):
    cfg = load_config(Outer, write(tmp_path, "name: a\ntrain:\n  lr: 0.5\n"), ["train.steps=3", "seeds=[1,2]"])
    assert isinstance(cfg, Outer) and isinstance(cfg.train, Inner)
    assert (cfg.name, cfg.train.lr, cfg.train.steps, cfg.seeds) == ("a", 0.5, 3, [1, 2])


def test_unknown_key_names_full_path_and_file(tmp_path):
    path = write(tmp_path, "name: a\ntrain:\n  lrr: 0.5\n")
    with pytest.raises(ConfigError) as err:
        load_config(Outer, path)
    assert "train.lrr" in str(err.value) and str(path) in str(err.value)


def test_wrong_type_names_key(tmp_path):
    path = write(tmp_path, "name: a\ntrain:\n  steps: many\n")
    with pytest.raises(ConfigError) as err:
        load_config(Outer, path)
    assert "train.steps" in str(err.value) and str(path) in str(err.value)


def test_missing_required_field(tmp_path):
    with pytest.raises(ConfigError, match="'name'"):
        load_config(Outer, write(tmp_path, "seeds: [1]\n"))


def test_bad_override_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        load_config(Outer, write(tmp_path, "name: a\n"), ["train.steps"])
    with pytest.raises(ConfigError, match="override 'train.nope=1'"):
        load_config(Outer, write(tmp_path, "name: a\n"), ["train.nope=1"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Outer, tmp_path / "absent.yaml")
