"""No import circle among cxloop's modules (issue 17).

A circle of module-level imports makes the order of imports decide whether a name exists yet, and
ties modules that should each own one thing. The graph is read from the source with `ast`, not by
importing: an edge A -> B for each import A runs when it is loaded (a module's top level, its `if`
and `try` blocks; not `if TYPE_CHECKING:` and not imports inside functions). Importing `p.q.m` also
runs the packages `p.q` and `p` first: those are edges too, except to the packages that hold A (they
are already being loaded when A is).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import cxloop

ROOT = Path(cxloop.__file__).resolve().parent
SKIP = {"tests", "bench", "build", ".mypy-path"}  # beside the package, not in it


def module_files(root: Path) -> dict[str, Path]:
    """Module name -> file, for every module of the package under `root`."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in SKIP or rel.parts[:2] == ("migrations", "versions") or any(
                p.startswith(".") or "egg-info" in p for p in rel.parts):  # versions: alembic loads by path
            continue
        parts = ["cxloop", *rel.with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _load_time(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements of a module body that run when it is loaded."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name != "TYPE_CHECKING":
                yield from _load_time(node.body)
            yield from _load_time(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _load_time(block)


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of the package that loading it loads first."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()  # modules whose names this one needs loaded
        for node in _load_time(ast.parse(path.read_text(encoding="utf-8")).body):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
                continue
            base = node.module or ""
            if node.level:  # relative: from the package that holds this module
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([base] if base else [])])
            subs = {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules}
            targets.update(subs)
            if len(subs) < len(node.names):  # a name defined in `base` itself, not a submodule
                targets.add(base)
        own = {*_ancestors(name), name}  # already being loaded when this module is
        edges: set[str] = set()
        for t in targets:
            edges.update(m for m in _ancestors(t) if m in modules and m not in own)
            if t in modules and t != name:
                edges.add(t)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (its first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_cxloop_has_no_import_circle() -> None:
    modules = module_files(ROOT)
    assert "cxloop.tasks.kpis.stage" in modules and "cxloop.cli" in modules  # the walk found the package
    cycle = find_cycle(import_graph(modules))
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_walk_finds_a_circle_through_a_package_and_ignores_deferred_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "stage"
    pkg.mkdir()
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "other.py").write_text("from cxloop.stage.part import x\n")
    (pkg / "__init__.py").write_text("from cxloop.stage.part import x\n")
    (pkg / "part.py").write_text("from cxloop.stage import helper\nx = 1\n")  # its own package: no edge back
    (pkg / "helper.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                   "    from cxloop import other\n"
                                   "def f():\n    from cxloop import other\n")
    modules = module_files(tmp_path)
    graph = import_graph(modules)
    assert graph["cxloop.other"] == {"cxloop.stage", "cxloop.stage.part"}
    assert graph["cxloop.stage.part"] == {"cxloop.stage.helper"}
    assert find_cycle(graph) is None
    (pkg / "helper.py").write_text("import cxloop.other\n")  # other -> stage -> part -> helper -> other
    cycle = find_cycle(import_graph(module_files(tmp_path)))
    assert cycle is not None and cycle[0] == cycle[-1]
    assert set(cycle) == {"cxloop.other", "cxloop.stage", "cxloop.stage.part", "cxloop.stage.helper"}
