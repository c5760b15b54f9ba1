"""Search recipes: every option of a search in one YAML file, plus how files are found.

    space: k1kx                       # shipped name or path
    limits: [null, null, {out: [64, 96]}, null, {out: [128, 192]}, {out: [256, 384]}]
    budgets: {layers: 20, latency: 0.08ms}
    latency_db: latency_db/v100-trt-fp16-damoyolo.csv
    population: 512
    candidates: 500000
    weights: [0, 0, 1, 1, 16]

Keys given on the command line override the recipe's, budget by budget.
"""

from __future__ import annotations

from pathlib import Path


from ..errors import UserError
from ..fileio import read_yaml
from ..resources import LATENCY_DIR, PROJECT_ROOT, resolve_space_path
from ..space import SearchSpace, load_space
from .budgets import coerce_budgets
from .spacedoc import override_limits

RECIPE_KEYS = ("description", "space", "limits", "budgets", "ladder", "latency_db", "population",
               "candidates", "blocks_per_child", "seed", "score", "weights", "resolution",
               "batch_size", "checkpoint_every", "out", "jobs")
DEFAULT_LATENCY_DB = "latency_db/cpu-fp32.csv"


def load_recipe(path: str | Path) -> dict:
    """The recipe at ``path`` as a dict of known keys; budgets become ``Budget`` tuples."""
    source = str(path)
    doc = read_yaml(path)
    if not isinstance(doc, dict):
        raise UserError(source, "", "a search recipe must be a YAML mapping")
    for key in doc:
        if key not in RECIPE_KEYS:
            raise UserError(source, str(key), f"unknown key (known: {', '.join(RECIPE_KEYS)})")
    recipe = dict(doc)
    if "budgets" in recipe:
        recipe["budgets"] = coerce_budgets(recipe["budgets"], source, "budgets")
    if "ladder" in recipe and not isinstance(recipe["ladder"], str):
        raise UserError(source, "ladder", "expected KIND=V1,V2,... such as latency=0.08ms,0.12ms")
    for key in ("space", "latency_db", "out", "score"):
        if key in recipe and not isinstance(recipe[key], str):
            raise UserError(source, key, f"expected text, got {recipe[key]!r}")
    recipe["_source"] = source
    return recipe


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


def recipe_space(recipe: dict, space_text: str | None) -> SearchSpace:
    """The recipe's space (or ``space_text``), narrowed by the recipe's ``limits``."""
    source = recipe.get("_source", "")
    text = space_text or recipe.get("space")
    if not text:
        raise UserError(source or "search", "space", "missing: name a search space (e.g. --space k1kx)")
    space = load_space(resolve_space_path(find_file(text, PROJECT_ROOT / "search_spaces", ".yaml").as_posix()))
    return override_limits(space, recipe.get("limits"), source)
