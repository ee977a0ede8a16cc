"""The package's modules import one another without cycles (function-level imports included): a cycle works
only by the order modules happen to be imported in, and hides which module builds on which."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "adain_nodes"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its code (``from x import name`` counts as
    module ``x.name`` when that is a module, else as ``x``)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each module that can reach itself, with the path back."""
    found = []
    for start in sorted(graph):
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for following in sorted(graph[node]):
                if following == start:
                    found.append(path + [start])
                elif following not in seen:
                    seen.add(following)
                    stack.append((following, path + [following]))
    return found


def test_the_graph_sees_imports():
    graph = import_graph()
    assert "adain_nodes.runner.core_nodes" in graph["adain_nodes.runner.latent_nodes"]
    assert "adain_nodes.runner.latent_nodes" in graph["adain_nodes.runner.registry"]
    assert "adain_nodes.host" in graph["adain_nodes.nodes.common"]  # a package's __init__ is a module too


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_a_cycle_is_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"], ["b", "c", "a", "b"],
                                                                         ["c", "a", "b", "c"]]
