"""The package's import structure: every module sits in a layer of `LAYERS` and imports only from its own
layer or lower ones, and no import circle exists anywhere (imports inside functions and under
TYPE_CHECKING count: a circle through a lazy import is still a circle in the design).

Imports are read from the source with `ast` (nothing is imported), so the test also sees modules that need
optional packages. A new module must be placed in the table: the test names it when it is not.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

PACKAGE = "yolonas_cli"
SOURCE = Path(__file__).resolve().parents[1] / "src" / PACKAGE

#: Bottom to top: a module may import from its own layer and the ones above it in this list.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("core", ("core",)),  # errors, console, devices, sizes, atomic files, COCO names, version
    ("model", ("model",)),  # the network: blocks, the S/M/L table, FLOP counting
    ("weights", ("weights",)),  # lock, resolve, download and archives, the unpickler, checkpoints, loading
    ("data", ("data",)),  # sources, datasets, results, sinks, drawing
    ("engine", ("engine",)),  # letterbox, box ops and NMS, postprocess, the Backend interface, the Engine
    ("metrics", ("metrics",)),  # matching, COCO, curves, confusion, plots, the original's metric, the val loop
    ("formats", ("formats",)),  # one module per export format, their registry, INT8
    ("cfg", ("cfg",)),  # the typed arguments of every mode
    ("detector", ("detector",)),  # weights or an exported file behind one Backend
    ("distributed", ("distributed",)),  # Ray: the cluster, model files shipped to workers, batch inference on actors
    ("modes", ("modes",)),  # predict, val, export, info, benchmark, serve
    ("api", ("api",)),  # NAS: the Detector with the modes as methods
    ("cli", ("cli",)),  # the command line
    ("entry", ("", "__main__")),  # the package itself (NAS, lazily) and `python -m yolonas_cli`
)


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    """Every module of the package: name -> source file."""
    return {module_name(path): path for path in sorted(SOURCE.rglob("*.py"))}


def imported_modules(name: str, path: Path, known: Iterable[str]) -> set[str]:
    """The package modules `name` imports anywhere in its source (`from a import b` counts as a.b when a.b is
    a module, else as a)."""
    known = set(known)
    found = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
    return {m for m in found if m == PACKAGE or m.startswith(PACKAGE + ".")} - {name}


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def layer_of(module: str) -> int | None:
    """The index in LAYERS of the longest prefix that names `module` (None: not in the table)."""
    relative = module[len(PACKAGE) + 1 :] if module != PACKAGE else ""
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = relative == prefix or (prefix and relative.startswith(prefix + "."))
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return None if best is None else best[1]


def upward_imports(graph: Mapping[str, set[str]]) -> list[str]:
    """'a (layer) imports b (higher layer)' for every import from a higher layer."""
    problems = []
    for module, imports in sorted(graph.items()):
        for target in sorted(imports):
            low, high = layer_of(module), layer_of(target)
            if low is not None and high is not None and high > low:
                problems.append(f"{module} ({LAYERS[low][0]}) imports {target} ({LAYERS[high][0]})")
    return problems


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The import circles: strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


# ---------------------------------------------------------------------------------------------- the checks


def test_every_module_is_in_the_layer_table() -> None:
    missing = [m for m in package_modules() if layer_of(m) is None]
    assert not missing, f"add these modules to LAYERS in tests/test_architecture.py: {missing}"


def test_no_module_imports_from_a_higher_layer() -> None:
    problems = upward_imports(import_graph())
    assert not problems, "\n".join(problems)


def test_there_is_no_import_circle() -> None:
    found = cycles(import_graph())
    assert not found, "import circles: " + "; ".join(" -> ".join(c) for c in found)


def test_the_graph_is_read_from_the_source() -> None:
    """The reader sees lazy imports inside functions and `from package import module` forms."""
    graph = import_graph()
    assert "yolonas_cli.api" in graph["yolonas_cli"]  # the lazy NAS of the package root
    assert "yolonas_cli.modes.export" in graph["yolonas_cli.modes.benchmark.rows"]
    assert "yolonas_cli.core.console" in graph["yolonas_cli.weights.resolve"]  # `from yolonas_cli.core import console`
    assert len(graph) > 60


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": set(), "c": {"b"}}, []),
        ({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c"}}, [["a", "b"], ["c", "d"]]),
    ],
)
def test_the_cycle_finder_finds_circles(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert sorted(cycles(graph)) == expected


def test_the_layer_check_finds_an_upward_import() -> None:
    graph = {"yolonas_cli.engine.engine": {"yolonas_cli.api"}, "yolonas_cli.api": {"yolonas_cli.core.errors"}}
    assert upward_imports(graph) == ["yolonas_cli.engine.engine (engine) imports yolonas_cli.api (api)"]
    assert layer_of("yolonas_cli") == layer_of("yolonas_cli.__main__") == len(LAYERS) - 1
    assert layer_of("yolonas_cli.unknown") is None


def test_scripts_do_not_import_from_tests() -> None:
    """scripts/ use the package (and read fixture data files), never the test helpers."""
    root = SOURCE.parents[1]
    helpers = {path.stem for path in (root / "tests").glob("*.py")}
    for script in sorted((root / "scripts").glob("*.py")):
        tree = ast.parse(script.read_text(encoding="utf-8"))
        imported = {
            alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
        }
        imported |= {
            node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
        }
        assert not imported & helpers, f"{script.name} imports {sorted(imported & helpers)} from tests/"
        assert "sys.path" not in script.read_text(encoding="utf-8"), f"{script.name} changes sys.path"
    for shell in sorted((root / "scripts").glob("*.sh")):
        text = shell.read_text(encoding="utf-8")
        assert "/tests:" not in text and '/tests"' not in text and "from formula" not in text, shell.name
