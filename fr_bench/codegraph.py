"""The project's own import graph, read from the source with `ast` (nothing is imported).

Two uses: a test asserts the graph has no cycles (data flows one way), and the sweep keys every cached artifact and
cell by a fingerprint of the code that produces it (a module and everything project-internal it imports, at any
depth, function-level imports included). The fingerprint hashes the AST without docstrings, so comments, blank lines
and docstring edits do not invalidate the cache.
"""
from __future__ import annotations

import ast
import hashlib
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent   # the checkout that holds fr_bench/ and baselines/
PACKAGES = ("fr_bench", "baselines")


@dataclass
class SourceIndex:
    """Module name -> source file for the project's packages plus any plug-in files (loaded under their own name)."""

    files: dict[str, Path] = field(default_factory=dict)
    packages: set[str] = field(default_factory=set)
    root: Path = ROOT

    @classmethod
    def of_project(cls, root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> "SourceIndex":
        index = cls(root=root)
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
        return str(path.relative_to(self.root)) if path.is_relative_to(self.root) else str(path)


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


def _imports_in(index: SourceIndex, module: str, nodes: list[ast.AST]) -> set[str]:
    """The project modules imported by the import statements among `nodes` (a submodule import names the
    submodule)."""
    package = module if module in index.packages else module.rpartition(".")[0]
    found: set[str] = set()

    def target(name: str) -> None:
        while name and name not in index.files:   # `import a.b.func`-style references end at the module
            name = name.rpartition(".")[0]
        if name:
            found.add(name)

    for node in nodes:
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


def imports_of(index: SourceIndex, module: str) -> set[str]:
    """The project modules `module` imports at run time, anywhere in its body."""
    return _imports_in(index, module, _runtime_nodes(_tree(index.files[module])))


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


# --- Code fingerprints: what a cached artifact or cell was computed with ------------------------------------------

def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


class Fingerprinter:
    """Hashes of the project's modules (AST without docstrings, so comments, blank lines and docstrings do not
    count) and of the code behind an object: its module and every project module reachable from it by imports.

    A function is followed through its own imports and its module's top-level imports only, so a builder module can
    hold several builders that import different stages (editing CDPO's stage does not touch the SFT builder)."""

    def __init__(self, index: SourceIndex | None = None) -> None:
        self.index = index or SourceIndex.of_project()
        self._hash: dict[str, str] = {}
        self._imports: dict[str, set[str]] = {}

    def module_hash(self, module: str) -> str:
        if module not in self._hash:
            dumped = ast.dump(_strip_docstrings(_tree(self.index.files[module])), include_attributes=False)
            self._hash[module] = hashlib.sha256(dumped.encode()).hexdigest()[:16]
        return self._hash[module]

    def _module_of(self, obj: object) -> str | None:
        """The object's module in the index; a plug-in file (loaded under its own name) is added on first sight."""
        name = getattr(obj, "__module__", None)
        if name is None:
            return None
        if name not in self.index.files:
            file = getattr(sys.modules.get(name), "__file__", None)
            if not file or not file.endswith(".py"):
                return None
            self.index.add(name, Path(file).resolve())
        return name

    def _closure(self, roots: set[str]) -> set[str]:
        seen, todo = set(), list(roots)
        while todo:
            m = todo.pop()
            if m in seen:
                continue
            seen.add(m)
            if m not in self._imports:
                self._imports[m] = imports_of(self.index, m)
            todo.extend(self._imports[m] - seen)
        return seen

    def roots(self, obj: object) -> set[str]:
        module = self._module_of(obj)
        if module is None:
            return set()
        if not inspect.isfunction(obj):
            return {module}
        tree = _tree(self.index.files[module])
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        own = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
               and n.name == obj.__name__]
        nodes = top + [x for n in own for x in _runtime_nodes(n)]
        return {module} | _imports_in(self.index, module, nodes)

    def code(self, *objects: object) -> dict[str, str]:
        """{module label: hash} of every project module behind `objects` (sorted by label)."""
        modules: set[str] = set()
        for obj in objects:
            module = self._module_of(obj)
            if module is None:
                continue
            # a function's own module counts as code, but only the imports it uses are followed
            follow = self.roots(obj) - {module} if inspect.isfunction(obj) else {module}
            modules |= {module} | self._closure(follow)
        return dict(sorted((self.index.label(m), self.module_hash(m)) for m in modules))


def code_changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """Labels of the modules whose hash differs (or that appeared / disappeared) between two fingerprints."""
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
