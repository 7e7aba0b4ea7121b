"""The layer table of ``docs/architecture.md``, checked on every import in ``lsh_tune/`` (module- and function-level).

Each module belongs to the unit with the longest matching name in :data:`LAYERS`; a module may
import modules of its own layer or below, never above; units (top-level packages and modules,
and each folder of ``search``, one layer each) import each other without cycles, and the modules of
``search`` do too; the Ray-free layers import ``ray`` nowhere, not even inside a function.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lsh_tune"

#: The table of docs/architecture.md from the bottom up: layer | units | whether it may import Ray.
_TABLE = """
ground floor    | lsh_tune.errors lsh_tune.seeds lsh_tune.storage      | no
data            | lsh_tune.data                                        | no
models          | lsh_tune.models                                      | no
train           | lsh_tune.train                                       | no
sparse          | lsh_tune.sparse                                      | no
sparse training | lsh_tune.train_sparse                                | no
lyapunov        | lsh_tune.lyapunov                                    | no
space           | lsh_tune.space                                       | no
search core     | lsh_tune.search                                      | no
search run      | lsh_tune.search.run                                  | no
search views    | lsh_tune.search.views                                | no
tables          | lsh_tune.table                                       | no
search on Ray   | lsh_tune.search.tune                                 | yes
tables on Ray   | lsh_tune.table.tune_build lsh_tune.table.tune_replay | yes
entry points    | lsh_tune.api lsh_tune.cli lsh_tune.__main__ lsh_tune | yes
"""
_ROWS = [[cell.strip() for cell in line.split("|")] for line in _TABLE.strip().splitlines()]
#: (layer, units) from the bottom up.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = tuple((layer, tuple(units.split())) for layer, units, _ in _ROWS)
#: Layers that must work without Ray installed.
RAY_FREE = tuple(layer for layer, _, ray in _ROWS if ray == "no")
#: The most modules ``lsh_tune/search/`` may hold at its top level (``__init__`` included): the
#: rest lives in the folders of its layers.
SEARCH_TOP_LEVEL_MAX = 14
RANK = {name: i for i, (name, _) in enumerate(LAYERS)}


def _module_names() -> dict[str, Path]:
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


MODULES = _module_names()


def _unit(module: str) -> str:
    """The longest unit of :data:`LAYERS` that is ``module`` or a package above it."""
    units = [u for _, us in LAYERS for u in us if module == u or module.startswith(u + ".")]
    if not units:
        raise AssertionError(f"{module} is in no layer of docs/architecture.md: add it to the table")
    return max(units, key=len)


def _layer(module: str) -> str:
    unit = _unit(module)
    return next(name for name, units in LAYERS if unit in units)


def _imports(module: str) -> set[str]:
    """Every module named by an import anywhere in ``module`` (``from P import m`` names P and P.m).

    Raises:
        AssertionError: a relative import (the package imports absolutely, which this reads).
    """
    out: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{module}:{node.lineno}: relative import; write it absolutely"
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES)
    return out


def _internal_edges() -> list[tuple[str, str]]:
    return [(m, t) for m in MODULES for t in sorted(_imports(m)) if t in MODULES and t != m]


def test_every_module_has_a_layer_and_the_table_names_only_real_modules():
    for module in MODULES:
        _layer(module)
    for _, units in LAYERS:
        for unit in units:
            assert unit in MODULES, f"{unit} (docs/architecture.md) does not exist"


def test_no_module_imports_from_a_layer_above_its_own():
    upward = [f"{m} ({_layer(m)}) imports {t} ({_layer(t)})" for m, t in _internal_edges()
              if RANK[_layer(t)] > RANK[_layer(m)]]
    assert not upward, "\n".join(upward)


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path (first node repeated at the end), else ``None``."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:  # on the current path: a cycle
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt, path + [nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_units_import_each_other_without_cycles():
    graph: dict[str, set[str]] = {}
    for m, t in _internal_edges():
        if _unit(m) != _unit(t):
            graph.setdefault(_unit(m), set()).add(_unit(t))
    cycle = _find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_search_modules_import_each_other_without_cycles():
    """Module by module, inside ``lsh_tune.search`` (TYPE_CHECKING and function-level imports count too)."""
    graph: dict[str, set[str]] = {}
    for m, t in _internal_edges():
        if m.startswith("lsh_tune.search") and t.startswith("lsh_tune.search"):
            graph.setdefault(m, set()).add(t)
    cycle = _find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_search_is_split_by_layer_into_folders():
    """Each folder of ``lsh_tune/search/`` is a layer of its own; the top level keeps only the core."""
    search = PACKAGE / "search"
    folders = sorted(p.name for p in search.iterdir() if (p / "__init__.py").is_file())
    units = {u for _, us in LAYERS for u in us}
    assert folders and all(f"lsh_tune.search.{f}" in units for f in folders), folders
    top = sorted(p.name for p in search.glob("*.py"))
    assert len(top) <= SEARCH_TOP_LEVEL_MAX, top


def test_imports_inside_functions_and_from_packages_are_seen():
    assert "ray" in _imports("lsh_tune.cli.search")  # imported inside _init_ray only
    assert "lsh_tune.search.tune.tuner" in _imports("lsh_tune.api")
    assert "lsh_tune.sparse._modes" in _imports("lsh_tune.sparse._hook")  # from lsh_tune.sparse import _modes


def test_the_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) in RAY_FREE))
def test_ray_free_layers_never_import_ray(module):
    ray_imports = sorted(t for t in _imports(module) if t == "ray" or t.startswith("ray."))
    assert not ray_imports, f"{module} ({_layer(module)}) imports {ray_imports}"
