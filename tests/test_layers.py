"""The package's structure: no import cycles, and the lowest layers stay low.

Every `import` of a project module counts, at module level or inside a function (a deferred
import is still a dependency), except those under `if TYPE_CHECKING:`. The graph is sorted with
the standard library's `graphlib`, which names a cycle when it finds one.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGES = ("degradation", "hydra_plugins")


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The project modules `path` imports (a package's `from p import x` counts x if x is a
    module of p, else p)."""
    module, tree = module_name(path), ast.parse(path.read_text())
    type_checking = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_checking.update(id(n) for n in ast.walk(node))
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_checking:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node, path.name == "__init__.py")
            names = [f"{target}.{a.name}" if f"{target}.{a.name}" in known else target
                     for a in node.names]  # fmt: skip
        else:
            continue
        found.update(n for n in names if n in known and n != module)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = [p for package in PACKAGES for p in (SRC / package).rglob("*.py")]
    known = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, known) for p in paths}


def test_project_modules_import_each_other_without_cycles():
    graph = import_graph()
    assert len(graph) > 30  # the walk found the package
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        raise AssertionError(f"import cycle: {' -> '.join(err.args[1])}") from None
    assert set(order) == set(graph)


VOCABULARY = "degradation.vocabulary"


def test_the_lowest_layers_import_nothing_above_them():
    graph = import_graph()
    lowest = {
        "degradation.errors": set(),
        "degradation.choices": {"degradation.errors"},
        "degradation.vocabulary": set(),  # pure words: everything may use them
        "degradation.config": {"degradation.choices", "degradation.errors", VOCABULARY},
        "degradation.resolvers": {VOCABULARY},
    }
    for module, allowed in lowest.items():
        assert graph[module] <= allowed, f"{module} imports {graph[module] - allowed}"
    # the models know nothing of configs, runs or Lightning's side of the package
    for module, imported in graph.items():
        if module.startswith("degradation.models"):
            outside = {m for m in imported if not m.startswith("degradation.models")}
            allowed = {"degradation.errors", "degradation.choices", VOCABULARY}
            assert outside <= allowed, (module, outside)


def test_a_cycle_is_found_when_there_is_one(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        assert set(err.args[1]) == {"a", "b", "c"}
    else:
        raise AssertionError("graphlib missed the cycle")
