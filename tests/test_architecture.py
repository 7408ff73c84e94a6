"""The house's rules, read from the source: imports go downwards through
the layers below and never in a circle, no private name crosses a package,
modules stay small and few sit loose at the top level.

docs/architecture.md explains the layers; this test keeps them true.
"""

import ast
import os

import pytest

from tests.conftest import REPO_ROOT

PACKAGE = "keras_prompt"
ROOT = os.path.join(REPO_ROOT, PACKAGE)

#: The layers, lowest first: a unit (a subpackage or a top-level module of
#: keras_prompt) imports only from its own layer or lower ones.
LAYERS = (
    ("version", "validation", "run_folders"),
    ("prompt_files", "optimizers", "data"),
    ("convert", "pretrained"),
    ("layers", "initializers", "adapters"),
    ("frozen_backbone",),
    ("tasks",),
    ("serving", "distribute", "analysis", "training", "toy"),
    ("cli",),
)
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}
MAX_LINES = 600
MAX_LOOSE_MODULES = 6


def module_files():
    """`{module name: path}` of every module of the package."""
    modules = {}
    for folder, _, files in os.walk(ROOT):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            parts = os.path.relpath(path, REPO_ROOT)[: -len(".py")]
            parts = parts.split(os.sep)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


MODULES = module_files()


def imported(path):
    """`[(target module, imported names, line)]` of every keras_prompt
    import in `path`, at any depth (function-level imports included);
    `names` are the imported names that are not modules themselves."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    found.append((alias.name, (), node.lineno))
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path}:{node.lineno}: relative import"
            if (node.module or "").split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                if child in MODULES:
                    found.append((child, (), node.lineno))
                else:
                    found.append((node.module, (alias.name,), node.lineno))
    return found


def package_of(module):
    """The package `module` belongs to (a package belongs to itself)."""
    if MODULES[module].endswith("__init__.py"):
        return module
    return module.rsplit(".", 1)[0]


def unit_of(module):
    """The subpackage or top-level module of keras_prompt holding
    `module` (`None` for the package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def edges():
    """`[(importer, target, names, line)]` over the package, the package's
    own `__init__` left out (it re-exports every layer)."""
    result = []
    for module, path in MODULES.items():
        if module == PACKAGE:
            continue
        for target, names, line in imported(path):
            result.append((module, target, names, line))
    return result


EDGES = edges()


def test_every_unit_has_a_layer():
    units = {unit_of(module) for module in MODULES} - {None}
    missing = sorted(units - set(RANK))
    assert not missing, (
        f"{missing} have no layer in tests/test_architecture.py LAYERS: "
        "give each new subpackage or top-level module its place there and "
        "in docs/architecture.md"
    )


def test_imports_only_go_down_the_layers():
    upward = []
    for importer, target, _, line in EDGES:
        source, destination = unit_of(importer), unit_of(target)
        if destination is None:
            # The root re-exports every layer: only the top may use it.
            if RANK[source] < len(LAYERS) - 1:
                upward.append(f"{importer}:{line} imports the package root")
        elif source != destination and RANK[destination] > RANK[source]:
            upward.append(f"{importer}:{line} -> {target}")
    assert not upward, "imports from a lower layer to a higher one:\n" + (
        "\n".join(upward)
    )


def strongly_connected(graph):
    """Tarjan's strongly connected components of `{node: {nodes}}` with
    more than one node."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle_between_modules():
    # A package's `__init__` re-exports its modules, which may import
    # siblings through it: those edges are the package's own plumbing.
    packages = {m for m, p in MODULES.items() if p.endswith("__init__.py")}
    graph = {}
    for importer, target, _, _ in EDGES:
        if importer == target or importer in packages or target in packages:
            continue
        graph.setdefault(importer, set()).add(target)
    assert not strongly_connected(graph)


def test_no_import_circle_between_units():
    graph = {}
    for importer, target, _, _ in EDGES:
        source, destination = unit_of(importer), unit_of(target)
        if destination is not None and source != destination:
            graph.setdefault(source, set()).add(destination)
    assert not strongly_connected(graph)


def test_no_private_name_crosses_a_package():
    crossing = []
    for importer, target, names, line in EDGES:
        private = [
            name
            for name in names
            if name.startswith("_") and not name.startswith("__")
        ]
        if target.rsplit(".", 1)[-1].startswith("_"):
            private.append(target)
        if private and package_of(importer) != package_of(target):
            crossing.append(f"{importer}:{line} imports {private}")
    assert not crossing, "private names imported across packages:\n" + (
        "\n".join(crossing)
    )


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_is_small(module):
    with open(MODULES[module], encoding="utf-8") as f:
        lines = sum(1 for _ in f)
    assert lines <= MAX_LINES, (
        f"{module} has {lines} lines: one concept per module, "
        f"at most {MAX_LINES} lines"
    )


def test_few_loose_modules_at_the_top():
    loose = sorted(
        name
        for name in os.listdir(ROOT)
        if name.endswith(".py") and name not in ("__init__.py", "version.py")
    )
    assert len(loose) <= MAX_LOOSE_MODULES, loose
