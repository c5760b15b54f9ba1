"""``tinynas cfg``: a recipe command's resolved settings and who set each one."""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Mapping, Sequence

from ..config import COMMAND_LINE, Overrides
from ..fileio import read_yaml

DEFAULT = "default"


def search_settings(recipe_path: str | os.PathLike | None, overrides: Overrides,
                    budgets: Sequence[str] = ()) -> list[tuple[str, object, str]]:
    """(setting, value, origin) of every search setting: the command line, the recipe, or the default."""
    from .search import SearchRecipe, resolved_search_recipe

    recipe, given = resolved_search_recipe(recipe_path, overrides, budgets)
    doc = read_yaml(recipe_path) if recipe_path else {}
    rows = []
    for f in fields(SearchRecipe):
        if f.name in ("source", "description"):
            continue
        origin = _origin(f.name, overrides, doc, recipe_path)
        if f.name == "budgets" and given:
            origin = f"{COMMAND_LINE} (--budget)" if origin == DEFAULT else f"{origin} and --budget"
        rows.append((f.name, getattr(recipe, f.name), origin))
    return rows


def train_settings(recipe_path: str | os.PathLike, overrides: Overrides) -> list[tuple[str, object, str]]:
    """(dotted key, value, origin) of every training setting; a model section the recipe does not
    state comes from the model recipe it names."""
    from .train import load_train_recipe

    recipe, source = load_train_recipe(recipe_path, overrides)
    doc = read_yaml(Path(source))
    model_name = doc.get("model") if isinstance(doc.get("model"), str) else None
    rows = []
    for key, value in _leaves(recipe.to_dict()):
        origin = _origin(key, overrides, doc, source)
        if origin == DEFAULT and model_name and key.split(".")[0] in ("backbone", "neck", "head"):
            origin = f"model recipe {model_name}"
        rows.append((key, value, origin))
    return rows


def _leaves(doc: Mapping, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out += _leaves(value, name + ".")
        else:
            out.append((name, value))
    return out


def _origin(key: str, overrides: Overrides, doc: Mapping, path: str | os.PathLike | None) -> str:
    """Who set dotted ``key``: a ``key=value`` or flag, the recipe file, or nobody."""
    origin = overrides.origin(key)
    if origin is not None:
        return origin if origin != COMMAND_LINE else f"{COMMAND_LINE} ({key}=)"
    node = doc
    for part in key.split("."):
        if not isinstance(node, Mapping) or node.get(part) is None:
            return DEFAULT
        node = node[part]
    return str(path)


def design_settings(data: str | os.PathLike, overrides: Overrides) -> list[tuple[str, object, str]]:
    """(setting, value, origin) of every design setting: a flag or ``key=``, or the default."""
    from .design import design_spec

    rows = settings_rows(design_spec(data, overrides), overrides, leave_out=("table_scale",))
    return [(key, value, f"{COMMAND_LINE} (DATA)" if key == "data" else origin) for key, value, origin in rows]


def settings_rows(values, overrides: Overrides, leave_out: Sequence[str] = ()) -> list[tuple[str, object, str]]:
    """(setting, value, origin) of each field of the settings dataclass ``values``: the flag or
    ``key=`` of ``overrides`` that set it, or the default."""
    rows = []
    for f in fields(values):
        if f.name in leave_out:  # set by the program, never by the user
            continue
        origin = overrides.origin(f.name)
        shown = DEFAULT if origin is None else f"{COMMAND_LINE} ({f.name}=)" if origin == COMMAND_LINE else \
            f"{COMMAND_LINE} ({origin})"
        rows.append((f.name, getattr(values, f.name), shown))
    return rows
