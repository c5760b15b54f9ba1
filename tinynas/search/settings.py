"""The settings of a search: checked once into a frozen ``SearchConfig``, which a checkpoint
stores as JSON.

A resumed run rebuilds everything from that JSON alone, so it holds plain values (budget texts,
parsed back into ``Budget`` values once by ``SearchConfig.from_json``) and the whole space, not
its file name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ..config import read_section, setting
from ..errors import UserError
from ..renamed import renamed_keys
from ..resources import resolve_space_path
from ..scores import DEFAULT_STAGE_WEIGHTS, SCORERS, parse_weights
from ..space import SearchSpace, load_space
from .budgets import Budget, coerce_budgets, parse_budget, parse_ladder, rung_label
from .spacedoc import space_to_dict

AT_LEAST_ONE = "[1, inf)"
# Workers are processes (or cluster tasks): a typo such as 10**9 must not fork-bomb the machine.
MAX_JOBS = 1024
# A population and a batch of children live in memory at once (a few KB each).
MAX_IN_MEMORY = 1_000_000


@dataclass(frozen=True)
class SearchSettings:
    """The settings of one search besides its space, budgets and latency table."""

    RENAMED_KEYS: ClassVar[dict[str, str]] = renamed_keys({"weights": "stage_weights"})

    population: int = setting(256, bounds=f"[1, {MAX_IN_MEMORY}]",
                              help="population size: the best distinct architectures kept")
    candidates: int = setting(10000, bounds=AT_LEAST_ONE, help="children to generate")
    blocks_per_child: int = setting(1, bounds=AT_LEAST_ONE, help="blocks mutated per child")
    seed: int = setting(0, help="random seed")
    score: str = setting("madnas", choices=SCORERS, help="zero-shot score")
    stage_weights: tuple[float, ...] = setting(DEFAULT_STAGE_WEIGHTS,
                                               help="stage weights, one per stage of the space")
    resolution: int | None = setting(None, bounds=AT_LEAST_ONE, unit="pixels",
                                     help="input size; default: the space's")
    batch_size: int = setting(512, bounds=f"[1, {MAX_IN_MEMORY}]",
                              help="children generated per batch from one population state")
    checkpoint_every: int = setting(10000, bounds=AT_LEAST_ONE, help="candidates between checkpoints")
    start_tries: int = setting(3000, bounds=AT_LEAST_ONE, help="mutations tried to find a start within budget")
    jobs: int = setting(1, bounds=f"[1, {MAX_JOBS}]", help="parallel workers; never changes the result")
    detector: str | None = setting(None, help="price latency as the whole detector: a model recipe (shipped "
                                              "name or path) whose wrap, neck and head surround each candidate")


def check_jobs(jobs: object, source: str = "") -> int:
    return read_section(SearchSettings, {"jobs": jobs}, source).jobs


def as_space(space: SearchSpace | str | Path) -> SearchSpace:
    if isinstance(space, SearchSpace):
        return space
    return load_space(resolve_space_path(str(space)))


def _ladder_budgets(ladder, fixed: tuple[Budget, ...], source: str) -> tuple[Budget, ...]:
    """The ladder's rungs, lowest first: two or more limits of one kind that no fixed budget
    also limits (given as text, or as ``Budget`` values already parsed)."""
    rung_budgets = parse_ladder(ladder, source, "ladder") if isinstance(ladder, str) else tuple(
        b if isinstance(b, Budget) else parse_budget(b, source, "ladder") for b in ladder)
    if len({b.kind for b in rung_budgets}) != 1 or len(rung_budgets) < 2:
        raise UserError(source, "ladder", "a ladder is two or more limits of one budget kind")
    rung_budgets = tuple(sorted(rung_budgets, key=lambda b: b.limit))
    if any(b.kind == rung_budgets[0].kind for b in fixed):
        raise UserError(source, "ladder", f"{rung_budgets[0].kind} is both a budget and the ladder; "
                        "give it in one place")
    return rung_budgets


def _latency_doc(latency, detector, source: str) -> dict | None:
    """What a config stores of the latency model: a table path (with the detector recipe around
    each candidate, when given) or the name of a predictor object."""
    if latency is None:
        latency_doc = None
    elif hasattr(latency, "predict_ms"):
        latency_doc = {"object": type(latency).__name__}
    else:
        latency_doc = {"path": str(latency)}
    if detector is not None:
        if latency_doc is None or "path" not in latency_doc:
            raise UserError(source, "detector", "a whole-detector latency is priced from a latency table: "
                            "give latency=<table path> (--latency-db) with the detector")
        latency_doc.update(detector_doc(detector, source))
    return latency_doc


@dataclass(frozen=True)
class SearchConfig:
    """Every setting of one search, checked: what ``search`` runs and a checkpoint stores."""

    space: dict  # the whole space (``space_to_dict``): a resume needs no file
    space_source: str | None
    budgets: tuple[Budget, ...]  # fixed budgets of every rung
    ladder: tuple[Budget, ...]  # one limit per rung, lowest first; empty without a ladder
    latency: dict | None  # the table path (and detector recipe), or the name of a predictor object
    population: int
    candidates: int
    blocks_per_child: int
    seed: int
    score: str
    stage_weights: tuple[float, ...]
    score_options: dict = field(default_factory=dict)
    resolution: int = 320
    batch_size: int = 512
    checkpoint_every: int = 10000
    start_tries: int = 3000

    @property
    def rungs(self) -> tuple[tuple[Budget, ...], ...]:
        """The budgets of each rung: the fixed budgets plus one ladder limit (or alone)."""
        if not self.ladder:
            return (self.budgets,)
        return tuple(self.budgets + (limit,) for limit in self.ladder)

    @property
    def rung_labels(self) -> list[str]:
        """The stem of each rung's best files: ``best``, or ``best-<kind>-<limit>`` on a ladder."""
        if not self.ladder:
            return ["best"]
        return [f"best-{rung_label(limit)}" for limit in self.ladder]

    def to_json(self) -> dict:
        """The checkpoint's ``config``: the keys and value forms of every earlier version."""
        return {
            "space": self.space, "space_source": self.space_source,
            "budgets": [b.text for b in self.budgets],
            "ladder": [b.text for b in self.ladder] or None,
            "latency": self.latency, "population": self.population, "candidates": self.candidates,
            "blocks_per_child": self.blocks_per_child, "seed": self.seed, "score": self.score,
            "weights": list(self.stage_weights),  # the checkpoint's key since the first format
            "score_options": dict(self.score_options), "resolution": self.resolution,
            "batch_size": self.batch_size, "checkpoint_every": self.checkpoint_every, "start_tries": self.start_tries,
        }

    @classmethod
    def from_json(cls, doc: dict, source: str = "config") -> "SearchConfig":
        """A stored ``config`` read back; its budget texts parsed here, once."""
        return cls(space=doc["space"], space_source=doc.get("space_source"),
                   budgets=tuple(parse_budget(t, source, "config.budgets") for t in doc["budgets"]),
                   ladder=tuple(parse_budget(t, source, "config.ladder") for t in doc["ladder"] or ()),
                   latency=doc["latency"], population=doc["population"], candidates=doc["candidates"],
                   blocks_per_child=doc["blocks_per_child"], seed=doc["seed"], score=doc["score"],
                   stage_weights=tuple(doc["weights"]), score_options=dict(doc.get("score_options") or {}),
                   resolution=doc["resolution"], batch_size=doc["batch_size"],
                   checkpoint_every=doc["checkpoint_every"], start_tries=doc.get("start_tries", 3000))


def build_config(space: SearchSpace, budgets, ladder, latency, population, candidates,
                 blocks_per_child, seed, score, stage_weights, score_options, resolution, batch_size,
                 checkpoint_every, start_tries, source: str = "", detector=None) -> SearchConfig:
    """Validate the arguments of ``search`` into its ``SearchConfig``.

    ``budgets`` and ``ladder`` are texts or ``Budget`` values (parsed here when text, and never
    again). ``detector`` (a model recipe: shipped name, path or ``ModelRecipe``) makes the
    latency the whole detector's: the recipe's wrap, neck and head around each candidate, priced
    from the table at ``latency``. The recipe itself is stored, so a resumed run needs no file.
    """
    fixed = coerce_budgets(budgets, source, "budgets")
    rungs = _ladder_budgets(ladder, fixed, source) if ladder is not None else ()
    checked = read_section(SearchSettings, {
        "population": population, "candidates": candidates, "blocks_per_child": blocks_per_child, "seed": seed,
        "score": score, "resolution": resolution, "batch_size": batch_size, "checkpoint_every": checkpoint_every,
        "start_tries": start_tries}, source)
    weights = parse_weights(stage_weights, source, "stage_weights")
    stages = len(space.initial.stage_ends())
    if len(weights) != stages:
        raise UserError(source, "stage_weights", f"{len(weights)} stage weights for a space with {stages} stages")
    latency_doc = _latency_doc(latency, detector, source)
    if "latency" in {b.kind for b in fixed + rungs[:1]} and latency is None:
        raise UserError(source, "latency", "a latency budget needs a latency table "
                        "(pass latency=<table path or predictor>, or --latency-db)")
    return SearchConfig(
        space=space_to_dict(space), space_source=space.source, budgets=fixed, ladder=rungs, latency=latency_doc,
        population=checked.population, candidates=checked.candidates, blocks_per_child=checked.blocks_per_child,
        seed=checked.seed, score=checked.score, stage_weights=weights, score_options=dict(score_options or {}),
        resolution=space.resolution if checked.resolution is None else checked.resolution,
        batch_size=checked.batch_size, checkpoint_every=checked.checkpoint_every, start_tries=checked.start_tries)


def detector_doc(detector, source: str = "") -> dict:
    """What a config stores of a detector recipe: its name and its whole content."""
    from ..detect.model_recipe import ModelRecipe, load_model_recipe

    recipe = detector if isinstance(detector, ModelRecipe) else load_model_recipe(str(detector))
    return {"detector": recipe.to_dict(), "detector_name": recipe.name or str(detector)}


def config_latency_model(config: SearchConfig, latency, source: str = ""):
    """The latency model a config asks for: ``latency`` as given, or, for a whole-detector
    search, a ``DetectorLatencyModel`` over the stored recipe and that table."""
    stored = config.latency or {}
    if "detector" not in stored or latency is None:
        return latency
    from ..detect.model_recipe import parse_model_recipe
    from ..latency.detector_model import DetectorLatencyModel

    recipe = parse_model_recipe(stored["detector"], f"{source or 'config'}: latency.detector")
    model = DetectorLatencyModel(str(latency), recipe)
    model.predictor  # a missing or corrupt table fails here, before any work
    return model
