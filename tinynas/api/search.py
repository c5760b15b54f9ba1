"""``tinynas search``: evolve a backbone from a search recipe, ``key=value`` settings and budgets."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

from ..config import Overrides
from ..errors import UserError
from ..search.search_recipe import SearchRecipe

__all__ = ["SearchRecipe", "resolved_search_recipe", "resume_search", "run_search"]


def resolved_search_recipe(recipe_path: str | os.PathLike | None, overrides: Overrides = Overrides(),
                           budgets: Sequence[str] = ()) -> tuple[SearchRecipe, list]:
    """The recipe file (or the defaults) with the command line's settings applied and its
    ``--budget`` texts parsed once into budgets; returns the recipe and those budgets."""
    from ..search.budgets import parse_budget
    from ..search.search_recipe import load_search_recipe, with_command_line

    recipe = load_search_recipe(recipe_path, overrides)
    given = [parse_budget(text, "", "--budget") for text in budgets]
    return with_command_line(recipe, given, ladder_given=overrides.origin("ladder") is not None), given


def run_search(recipe_path: str | os.PathLike | None, overrides: Overrides = Overrides(), budgets: Sequence[str] = (),
               backend: str = "loky", progress: bool = True, force: bool = False):
    """Search as the recipe and command line say; a table from another machine is noted on
    stderr. The run folder is the ``out`` setting when the command line names it, else a new
    numbered folder under ``runs/search``. Returns the ``SearchResult``."""
    from ..latency.machine import mismatch_note
    from ..runfolder import run_dir_for
    from ..search.evolution import search
    from ..search.search_recipe import DEFAULT_LATENCY_DB, check_weights, recipe_space, resolve_latency_path

    recipe, _ = resolved_search_recipe(recipe_path, overrides, budgets)
    space = recipe_space(recipe)
    check_weights(recipe, space)
    ladder_kind = recipe.ladder.split("=", 1)[0].strip().lower() if recipe.ladder else None
    wants_latency = ladder_kind == "latency" or any(b.kind == "latency" for b in recipe.budgets)
    latency = None
    if wants_latency or recipe.latency_db:
        latency = resolve_latency_path(recipe.latency_db or DEFAULT_LATENCY_DB)
        if not latency.is_file():
            field = "--latency-db" if recipe.latency_db else "--latency-db (default)"
            raise UserError(str(latency), field, "latency table not found; build one with "
                            "`tinynas latency build`, or name an existing table with --latency-db")
        note = mismatch_note(latency) if wants_latency else None
        if note:
            print(note, file=sys.stderr)
    name = Path(recipe_path).stem if recipe_path else space.name
    named_here = overrides.origin("out") is not None
    # A folder named on the command line is used as it is; otherwise a taken one is numbered.
    out = Path(recipe.out) if named_here and recipe.out else run_dir_for("search", name, recipe.out or None)
    return search(space, recipe.budgets, latency=latency, **recipe.search_arguments(), backend=backend,
                  out=out, progress=progress, exist_ok=force)


def resume_search(run_dir: str | os.PathLike, overrides: Overrides = Overrides(), backend: str = "loky",
                  progress: bool = True):
    """Continue the search saved in ``run_dir`` with its stored settings (``jobs`` of
    ``overrides`` aside: it only changes speed)."""
    from ..search.evolution import resume
    from ..search.search_recipe import load_search_recipe

    return resume(run_dir, jobs=load_search_recipe(None, overrides).jobs, backend=backend, progress=progress)


def search_backends() -> tuple[str, ...]:
    from ..search.evolution import BACKENDS

    return tuple(BACKENDS)
