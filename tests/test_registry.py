"""The one registry type and the one-way import graph (read from the source with ast)."""
from __future__ import annotations

import pytest

from fr_bench.artifacts import ARTIFACTS
from fr_bench.codegraph import SourceIndex, cycles, import_graph
from fr_bench.decoding.policies import POLICIES
from fr_bench.methods import METHODS, Method
from fr_bench.registry import Registry, RegistryError
from fr_bench.tasks import TASKS


def test_import_graph_has_no_cycles() -> None:
    graph = import_graph(SourceIndex.of_project())
    assert "fr_bench.types" in graph and "baselines.single_model" in graph
    assert cycles(graph) == []
    # one-way at the level of subpackages too (decoding -> methods never back), and fr_bench never imports baselines
    packages: dict[str, set[str]] = {}
    for module, deps in graph.items():
        outer = ".".join(module.split(".")[:2])
        packages.setdefault(outer, set()).update(".".join(d.split(".")[:2]) for d in deps)
    for outer, deps in packages.items():
        deps.discard(outer)
    assert cycles(packages) == []
    assert not [m for m, deps in graph.items() if m.startswith("fr_bench") and any(d.startswith("baselines") for d in deps)]
    assert graph["fr_bench.types"] == set()  # its TYPE_CHECKING import of the world is not a run-time edge


def test_cycles_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_kind_uses_the_one_registry() -> None:
    assert all(isinstance(r, Registry) for r in (METHODS, TASKS, ARTIFACTS, POLICIES))
    assert {"fusionroute", "single_model", "token_confidence"} <= set(METHODS.names())
    assert {"router_sft", "router_cdpo", "reward_model", "merge_dare"} <= set(ARTIFACTS.names())
    assert {"fusionroute", "confidence", "single_model"} <= set(POLICIES.names())
    assert "baselines.reward_model:build_reward_model" in ARTIFACTS.where("reward_model")


def test_duplicate_name_names_both_places() -> None:
    reg: Registry[type[Method]] = Registry("method", Method)

    class First(Method):
        pass

    class Second(Method):
        pass

    reg.add("x", First)
    reg.add("x", First)        # the same definition again (a module imported twice) is not a conflict
    with pytest.raises(RegistryError) as err:
        reg.add("x", Second)
    msg = str(err.value)
    assert "First" in msg and "Second" in msg and "test_registry.py:" in msg
    with pytest.raises(RegistryError, match="not a subclass of Method"):
        reg.add("y", int)  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="unknown method 'z'; registered: x"):
        reg.get("z")
