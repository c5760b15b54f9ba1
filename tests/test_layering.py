"""The house's floors: every import inside tinynas points to its own floor or one below, so
no module needs anything built on top of it (README, "Layout")."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "tinynas"
FLOORS = [
    {"errors", "crashpoints", "atomic", "resources", "fileio", "bounds", "config", "runfolder"},
    {"arch", "archio", "layout", "ops", "costs", "space", "plan", "neck_plan", "memory"},
    {"scores", "nn", "data"},
    {"detect", "checkpoint", "deploy"},
    {"latency", "train"},
    {"search", "distill"},
    {"design", "api", "cli", "__init__", "__main__"},
]
FLOOR = {unit: level for level, units in enumerate(FLOORS) for unit in units}


def imports():
    """(importing unit, imported unit, file) for every import of one tinynas unit by another."""
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        package, unit = list(parts[:-1]), parts[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.startswith("tinynas"):
                target = node.module.split(".")[1:]
            else:
                continue
            for name in ([target[0]] if target else [alias.name for alias in node.names]):
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
