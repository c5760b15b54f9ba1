"""Stage 1: one shared search whose ladder prices the whole detector.

The first rung is the user's budget; the larger rungs (budget x each teacher factor) give the
teachers the smaller models are distilled from. Every rung's latency is the deployed detector's
(backbone as the model recipe wraps it, plus that recipe's neck and head for the candidate's
level widths), predicted from the chosen table.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..search import resume, search
from ..search.budgets import Budget, rung_label
from ..search.output import CANDIDATES_NAME
from .spec import DesignSpec

# A shipped model recipe -> the shipped one of the same wrap whose lighter neck reaches under its
# latency floor (the design's first rung is the budget, and no backbone gets below the neck).
SMALLER_FAMILY = {"tinynas-n": "tinynas-p"}


def latency_model(spec: DesignSpec, num_classes: int):
    """The whole-detector latency model the search and the report price with (the head's
    class convs depend on the dataset's class count)."""
    from ..detect.model_recipe import load_model_recipe
    from ..latency.detector_model import DetectorLatencyModel

    return DetectorLatencyModel(spec.latency_db, load_model_recipe(spec.model).with_num_classes(num_classes))


def search_resolution(spec: DesignSpec, model) -> int:
    """The input the searched stem sees in a ``spec.size`` image: half of it behind a Focus stem
    when the space's stem reads Focus's 12 channels, the image itself otherwise."""
    from ..plan import searched_size
    from ..resources import resolve_space_path
    from ..space import load_space

    initial = load_space(resolve_space_path(spec.space)).initial
    return searched_size(initial, spec.size, model.recipe.backbone.focus)


def check(spec: DesignSpec, num_classes: int) -> None:
    """The search's own refusals (a table whose grid misses the detector at this size, a budget no
    mutation reaches), raised before the design folder records its settings: the folder is
    not claimed by a design that could never start."""
    from ..search.evolution import create_evolution

    model = latency_model(spec, num_classes)
    evolution, evaluator = create_evolution(spec.space, spec.budgets, ladder=spec.search_ladder(), latency=spec.latency_db,
                                            detector=model.recipe, seed=spec.seed,
                                            resolution=search_resolution(spec, model))
    try:
        evolution.start(evaluator)
    except UserError as err:
        smaller = SMALLER_FAMILY.get(spec.model)
        if smaller is None or "impossible budget" not in err.reason:
            raise
        # The recipe's neck and head are fixed, so its family has a floor; say where to go below it.
        raise UserError(err.source, err.field, f"{err.reason}; {spec.model}'s neck and head set that floor: "
                        f"--model {smaller} (a shallower neck) reaches lower") from None


def run(spec: DesignSpec, num_classes: int, folder: Path, progress: bool) -> dict:
    model = latency_model(spec, num_classes)
    if (folder / "checkpoint.json").is_file() and (folder / CANDIDATES_NAME).is_file():
        result = resume(folder, progress=progress)  # the table and the detector are in its config
    else:
        result = search(spec.space, spec.budgets, ladder=spec.search_ladder(), latency=spec.latency_db,
                        detector=model.recipe, candidates=spec.candidates, seed=spec.seed,
                        resolution=search_resolution(spec, model), out=folder, progress=progress, exist_ok=True)
    rungs = []
    scale = spec.table_scale
    for rung in result.rungs:
        arch_file = next(f for f in rung.files if f.endswith(".yaml"))
        limit = next(b.limit for b in rung.budgets if b.kind == "latency")
        # Limits and predictions go on in ms measured here; the search's own files keep the table's.
        label = rung.label if scale == 1.0 else "best-" + rung_label(Budget("latency", float(f"{limit / scale:.4g}")))
        rungs.append({"label": label, "limit_ms": limit / scale, "arch": str((folder / arch_file).resolve()),
                      "predicted_ms": rung.best.latency_ms / scale, "score": rung.best.score,
                      **({"table_limit_ms": limit, "table_predicted_ms": rung.best.latency_ms} if scale != 1.0 else {})})
    return {"rungs": rungs, "candidates": result.candidates, "seconds": round(result.seconds, 2)}
