"""The house's floors: every import inside tinynas points to its own floor or one below, so
no module needs anything built on top of it (README, "Layout")."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "tinynas"
FLOORS = [
    {"version", "errors", "crashpoints", "atomic", "resources", "fileio", "bounds", "config", "runfolder",
     "preflight", "renamed", "registry"},
    {"arch", "archio", "layout", "ops", "costs", "space", "plan", "neck_plan", "memory"},
    {"scores", "nn", "data"},
    {"detect", "checkpoint", "deploy"},
    {"latency", "train"},
    {"search", "distill"},
    {"design", "api", "cli", "conformance", "__init__", "__main__"},
]
FLOOR = {unit: level for level, units in enumerate(FLOORS) for unit in units}


def imported_from(path: Path) -> list[tuple[list[str], list[str]]]:
    """(the package path imported from, the names imported) for each tinynas ``from`` import
    in ``path``, at the top or inside a function alike (an import in a function only defers a
    cycle to the first call)."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    package = parts[:-1]  # what a relative import starts from, for a module and an __init__ alike
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package[:len(package) - (node.level - 1)]
            found.append((base + (node.module.split(".") if node.module else []), [a.name for a in node.names]))
        elif node.module and node.module.split(".")[0] == "tinynas":
            found.append((node.module.split(".")[1:], [a.name for a in node.names]))
    return found


def imports():
    """(importing unit, imported unit, file) for every import of one tinynas unit by another."""
    for path in PACKAGE.rglob("*.py"):
        unit = path.relative_to(PACKAGE).with_suffix("").parts[0]
        for target, names in imported_from(path):
            for name in ([target[0]] if target else names):
                if name != unit and name != "__version__":
                    yield unit, name, path.relative_to(PACKAGE)


def test_every_unit_has_a_floor():
    units = {p.relative_to(PACKAGE).with_suffix("").parts[0] for p in PACKAGE.rglob("*.py")}
    assert units - FLOOR.keys() == set(), "a new module or package needs a floor in README and here"


def test_no_import_runs_up_a_floor():
    upward = sorted({(str(path), unit, name) for unit, name, path in imports() if FLOOR[name] > FLOOR[unit]})
    assert upward == [], f"imports that point up a floor: {upward}"


def test_train_knows_nothing_of_distillation():
    assert not [path for unit, name, path in imports() if unit == "train" and name == "distill"]


# ---------------------------------------------------------------------------- cycles
def _modules() -> dict[str, Path]:
    """Every tinynas module by dotted name inside the package ("" is the package itself)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def module_imports() -> dict[str, set[str]]:
    """Module -> the tinynas modules it imports."""
    modules = _modules()
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        for target, names in imported_from(path):
            for alias in names:  # `from . import x` imports the module x, `from .x import y` x
                submodule = ".".join([*target, alias])
                imported = submodule if submodule in modules else ".".join(target)
                if imported in modules and imported != name:
                    graph[name].add(imported)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
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


def test_the_cycle_finder_finds_a_cycle_through_three_modules():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_module_imports_itself_back():
    found = [[name or "tinynas" for name in cycle] for cycle in cycles(module_imports())]
    assert found == [], f"import cycles (in-function imports included): {found}"


# What the CLI may import besides the front door: the grammar of settings and errors.
CLI_MAY_IMPORT = {"api", "errors", "config", "renamed", "version"}


def test_the_cli_calls_only_the_front_door():
    """Every command goes through ``tinynas.api`` (issue 24): the CLI parses and prints, the API does."""
    found = sorted({(str(path), name) for unit, name, path in imports()
                    if unit == "cli" and name not in CLI_MAY_IMPORT | {"cli"}})
    assert found == [], f"the CLI imports past tinynas.api: {found}"
