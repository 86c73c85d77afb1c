"""The project's own import graph, read from the source with `ast` (nothing is imported).

Two uses: a test asserts the graph has no cycles (data flows one way), and the sweep keys every cached artifact and
cell by a fingerprint of the code that produces it (a module and everything project-internal it imports, at any
depth, function-level imports included). The fingerprint hashes the AST without docstrings, so comments, blank lines
and docstring edits do not invalidate the cache.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent   # the checkout that holds fr_bench/ and baselines/
PACKAGES = ("fr_bench", "baselines")


@dataclass
class SourceIndex:
    """Module name -> source file for the project's packages plus any plug-in files (loaded under their own name)."""

    files: dict[str, Path] = field(default_factory=dict)
    packages: set[str] = field(default_factory=set)

    @classmethod
    def of_project(cls, root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> "SourceIndex":
        index = cls()
        for pkg in packages:
            for path in sorted((root / pkg).rglob("*.py")):
                parts = list(path.relative_to(root).with_suffix("").parts)
                if parts[-1] == "__init__":
                    parts.pop()
                    index.packages.add(".".join(parts))
                index.files[".".join(parts)] = path
        return index

    def add(self, module: str, path: Path) -> None:
        self.files[module] = path

    def label(self, module: str) -> str:
        """How a module is named to a person: its path relative to the checkout (or the plug-in's path)."""
        path = self.files[module]
        return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of the tree except the bodies of `if TYPE_CHECKING:` (type-only imports never run)."""
    nodes, todo = [], [tree]
    while todo:
        node = todo.pop()
        nodes.append(node)
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return nodes


def imports_of(index: SourceIndex, module: str) -> set[str]:
    """The project modules `module` imports at run time, anywhere in its body (a submodule import names the
    submodule)."""
    package = module if module in index.packages else module.rpartition(".")[0]
    found: set[str] = set()

    def target(name: str) -> None:
        while name and name not in index.files:   # `import a.b.func`-style references end at the module
            name = name.rpartition(".")[0]
        if name:
            found.add(name)

    for node in _runtime_nodes(_tree(index.files[module])):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                target(sub if sub in index.files else source)
    found.discard(module)
    return found


def import_graph(index: SourceIndex) -> dict[str, set[str]]:
    return {m: imports_of(index, m) for m in index.files}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted: 0 of them = no cycle."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        order[v] = low[v] = len(order)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in order:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], order[w])
        if low[v] == order[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in order:
            visit(v)
    return found
