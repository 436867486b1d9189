"""refgrad's modules import one way: every import statement in the package, and no cycle among them.

Every statement counts, wherever it is: at the top of a module, inside a function (a lazy import) or
under ``if TYPE_CHECKING:`` (a typing-only one). A cycle of any of them is a knot a reader has to undo
and a ``ForwardRef`` or a lazy import waiting to be written.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "refgrad"


def module_name(path: Path, root: Path) -> str:
    """``refgrad.ops.spec`` for ``refgrad/ops/spec.py``; a package's ``__init__.py`` is the package."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """For each module of the package at ``root``: the package's modules its import statements name."""
    paths = {module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            named: list[str] = []
            if isinstance(node, ast.Import):
                named = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # a relative import: resolved against this module's package
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                # `from refgrad.ops import scalar` names the module refgrad.ops.scalar too.
                named = [source, *(f"{source}.{alias.name}" for alias in node.names)]
            for dotted in named:
                target = dotted
                while target and target not in paths:  # refgrad.value.Value -> refgrad.value
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, without recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    advanced = True
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_package_imports_one_way() -> None:
    """No cycle among refgrad's modules, counting lazy and typing-only imports."""
    graph = import_graph(PACKAGE)
    assert len(graph) > 30, "the walk found too few modules to mean anything"
    assert cycles(graph) == []


def test_the_core_layers_import_downward_only() -> None:
    """The registry knows no node, the kernel no differentiation, reverse mode no refgrad.Value."""
    graph = import_graph(PACKAGE)
    core = ["refgrad.errors", "refgrad.numeric", "refgrad.ops.spec", "refgrad.ops.scalar", "refgrad.ops"]
    core += ["refgrad.kernel", "refgrad.reverse", "refgrad.value", "refgrad.autodiff"]
    for position, module in enumerate(core):
        above = set(core[position + 1 :])
        assert not graph[module] & above, f"{module} imports {sorted(graph[module] & above)}, a layer above it"


def test_a_cycle_of_any_import_is_found(tmp_path: Path) -> None:
    """The walk sees a lazy import and a typing-only one, and relative imports: a planted knot is reported."""
    package = tmp_path / "knot"
    (package / "inner").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "inner" / "__init__.py").write_text("")
    (package / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from knot.b import B\n")
    (package / "b.py").write_text("def f() -> None:\n    from . import c\n")
    (package / "c.py").write_text("from .inner import d\n")
    (package / "inner" / "d.py").write_text("from ..a import A\n")
    (package / "e.py").write_text("import knot.a\n")
    graph = import_graph(package)
    assert graph["knot.inner.d"] == {"knot.a"}
    assert graph["knot.c"] == {"knot.inner", "knot.inner.d"}
    assert cycles(graph) == [["knot.a", "knot.b", "knot.c", "knot.inner.d"]]
    (package / "a.py").write_text("")
    assert cycles(import_graph(package)) == []
