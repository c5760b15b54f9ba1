"""Search recipes: every setting of a search in one YAML file, plus how files are found.

    space: k1kx                       # shipped name or path
    limits: [null, null, {out: [64, 96]}, null, {out: [128, 192]}, {out: [256, 384]}]
    budgets: {layers: 20, latency: 0.08ms}
    latency_db: latency_db/v100-trt-fp16-damoyolo.csv
    population: 512
    candidates: 500000
    stage_weights: [0, 0, 1, 1, 16]

``SearchSettings`` describes the settings ``tinynas.search.search`` takes (their defaults are
the library's); ``SearchRecipe`` adds what a recipe names besides: the space, its limits, the
budgets, the latency table and the run folder. ``key=value`` settings from the command line
(``population=64``) are applied to the document before it is read; budgets given on the
command line replace the recipe's budget by budget (``with_command_line``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..config import Overrides, Source, as_source, internal, read_section, setting
from ..errors import UserError
from ..fileio import read_yaml
from ..resources import LATENCY_DIR, PROJECT_ROOT, resolve_space_path
from ..space import SearchSpace, load_space
from .budgets import Budget, coerce_budgets, merge_budgets, parse_ladder
from .settings import SearchSettings
from .spacedoc import override_limits

DEFAULT_LATENCY_DB = "latency_db/cpu-fp32.csv"


@dataclass(frozen=True)
class SearchRecipe(SearchSettings):
    """A recipe file (or the command line alone): the settings plus what to search and where."""

    description: str = ""
    space: str = setting("", help="search space: YAML file or shipped name (k1kx, kxkx, k1kxk1, k1dwk1)")
    limits: Any = setting(None, help="per-block limit overrides, one entry (or null) per block")
    budgets: tuple[Budget, ...] = setting((), help="upper limits: {latency: 0.12ms, flops: 3.5G, layers: 25}")
    ladder: str | None = setting(None, help="one best architecture per limit: latency=0.08ms,0.12ms")
    latency_db: str | None = setting(None, help=f"latency table for latency budgets (default {DEFAULT_LATENCY_DB})")
    out: str = setting("", help="run folder (default runs/<recipe or space name>, numbered if taken)")
    source: Source = internal(Source(""))

    def settings(self) -> SearchSettings:
        return SearchSettings(**{f.name: getattr(self, f.name) for f in fields(SearchSettings)})

    def search_arguments(self) -> dict:
        """The keyword arguments of ``tinynas.search.search`` these settings give."""
        values = {f.name: getattr(self, f.name) for f in fields(SearchSettings)}
        return {**values, "ladder": self.ladder, "source": self.source.file}


def read_search_recipe(doc: object, source: str | Source = "") -> SearchRecipe:
    """Validate a search recipe document (``{}`` for a search named on the command line alone)."""
    src = as_source(source)
    if not isinstance(doc, dict):
        raise src.error("", "a search recipe must be a YAML mapping")
    budgets = coerce_budgets(doc.get("budgets"), src.of("budgets"), "budgets")
    recipe = read_section(SearchRecipe, doc, src, extra={"budgets": budgets, "limits": doc.get("limits"),
                                                         "source": src})
    if recipe.ladder is not None:
        parse_ladder(recipe.ladder, src.of("ladder"), "ladder")
    return recipe


def load_search_recipe(path: str | Path | None, overrides: Overrides = Overrides()) -> SearchRecipe:
    """The recipe at ``path`` (or none) with ``overrides`` applied before it is read."""
    source = str(path) if path else ""
    doc = read_yaml(path) if path else {}
    if not isinstance(doc, dict):
        raise UserError(source, "", "a search recipe must be a YAML mapping")
    return read_search_recipe(overrides.apply(doc, source), Source(source, overrides))


def load_recipe(path: str | Path) -> dict:
    """The validated recipe at ``path`` as a dict (budgets as ``Budget`` values, stage weights a list),
    for callers that index it; ``load_search_recipe`` gives the typed recipe."""
    recipe = load_search_recipe(path)
    values = {f.name: getattr(recipe, f.name) for f in fields(recipe) if f.name != "source"}
    return {**values, "stage_weights": list(recipe.stage_weights), "_source": recipe.source.file}


def with_command_line(recipe: SearchRecipe, budgets: Sequence[Budget], ladder_given: bool) -> SearchRecipe:
    """``recipe`` with budgets from the command line: each replaces the recipe's budget of its kind.

    A ladder given on the command line replaces the recipe's budget of the same kind, and a
    budget given there replaces the recipe's ladder of the same kind.
    """
    ladder = recipe.ladder
    ladder_kind = ladder.split("=", 1)[0].strip().lower() if ladder else None
    kept = list(recipe.budgets)
    if ladder_given:
        kept = [b for b in kept if b.kind != ladder_kind]
    elif ladder and ladder_kind in {b.kind for b in budgets}:
        ladder = None
    return replace(recipe, budgets=merge_budgets(kept + list(budgets)), ladder=ladder)


def check_weights(recipe: SearchRecipe, space: SearchSpace) -> None:
    """One stage weight per stage of ``space``; the error names who set the weights."""
    stages = len(space.initial.stage_ends())
    if len(recipe.stage_weights) != stages:
        raise recipe.source.error("stage_weights", f"expected {stages} stage weights for {space.name}, "
                                                   f"got {len(recipe.stage_weights)}: {list(recipe.stage_weights)}")


def find_file(text: str, shipped_dir: Path, suffix: str) -> Path:
    """``text`` as a path from here, from the project root, or as a shipped name."""
    path = Path(text)
    for candidate in (path, PROJECT_ROOT / path, shipped_dir / path.name, shipped_dir / f"{path.name}{suffix}"):
        if candidate.is_file():
            return candidate
    return path


def resolve_latency_path(text: str) -> Path:
    """A latency table path; a name that matches nothing comes back as given (checked on use)."""
    return find_file(text, LATENCY_DIR, ".csv")


def recipe_space(recipe: SearchRecipe | Mapping, space_text: str | None = None) -> SearchSpace:
    """The recipe's space (or ``space_text``), narrowed by the recipe's ``limits``."""
    if isinstance(recipe, Mapping):  # load_recipe's form
        recipe = SearchRecipe(space=recipe.get("space") or "", limits=recipe.get("limits"),
                              source=Source(recipe.get("_source", "")))
    src = recipe.source
    text = space_text or recipe.space
    if not text:
        raise UserError(src.of("space") or "search", "space", "missing: name a search space (e.g. --space k1kx)")
    space = load_space(resolve_space_path(find_file(text, PROJECT_ROOT / "search_spaces", ".yaml").as_posix()))
    return override_limits(space, recipe.limits, src.of("limits"))
