"""A table fitted to this machine: ``tinynas latency calibrate``.

A table measured on one CPU prices networks on another off by a factor (2x was seen between
an AMD EPYC and an Intel Xeon), but it still *ranks* them: what a new machine changes is
mostly how fast every op is, plus a per-network overhead. So a few reference detectors are
timed here end to end, in the table's runtime and thread count, and ``measured = scale x
(sum of the table's ops) + overhead`` is fitted to them. The fit is stored in the sidecar under
this machine's name (``machines``), beside those of other machines; a predictor built on this
machine applies it instead of the table's own scale and overhead, and the mismatch note of a
job that prices with the table says the table was calibrated here.

The reference detectors are the table's model recipe around random backbones of its space at
its image size, as its sidecar's ``builds`` name them (or as the caller says).
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from datetime import datetime, timezone

from ..errors import UserError
from . import machine
from .table import load_table, update_meta

# "tinynas-n@320 over k1kx": how a build records the detectors it measured the ops of.
_BUILD_MODEL = re.compile(r"^(?P<model>[^@\s]+)@(?P<size>\d+)(?: over (?P<space>\S+))?$")


def table_detectors(meta: dict) -> list[tuple[str, int, str | None]]:
    """(model recipe, image size, space or None) of every detector family a table was built for."""
    found = []
    for build in meta.get("builds") or []:
        for text in build.get("models", []) if isinstance(build, dict) else []:
            match = _BUILD_MODEL.match(str(text))
            if match and (match["model"], int(match["size"]), match["space"]) not in found:
                found.append((match["model"], int(match["size"]), match["space"]))
    return found


def reference_detectors(meta: dict, model: str | None, space: str | None, size: int | None, n: int, seed: int):
    """The recipes timed and their image size: ``model`` around its own backbone and ``n - 1``
    random backbones of ``space`` (each, and the size, defaults to the table's first build)."""
    from ..detect.model_recipe import check_input_size, load_model_recipe
    from ..resources import resolve_space_path
    from ..space import load_space
    from .validate import random_archs

    built_model, built_size, built_space = (table_detectors(meta) or [(None, None, None)])[0]
    model, size, space = model or built_model, size or built_size or 640, space or built_space
    if model is None:
        raise UserError("--model", "", "the table names no detector it was built for: give --model RECIPE "
                        "(and --space, --size)")
    recipe = load_model_recipe(model)
    if space is None:
        raise UserError("--space", "", "the table names no search space for its detectors: give --space SPACE")
    check_input_size(recipe, size, "--size")  # before any detector is built or timed
    name = recipe.name or model
    recipes = [replace(recipe, name=name)]
    for i, arch in enumerate(random_archs(load_space(resolve_space_path(space)), n - 1, seed)):
        recipes.append(replace(recipe, name=f"{name}~{space}{i}", backbone=replace(recipe.backbone, arch=arch)))
    return recipes, size


def calibrate_table(table_path: str | os.PathLike, model: str | None = None, space: str | None = None,
                    size: int | None = None, n: int = 8, seed: int = 0, runs: int = 15, rounds: int = 3,
                    store: bool = True, progress: bool = True) -> dict:
    """Time the reference detectors here, fit scale and overhead, store the fit under this
    machine's name (unless ``store`` is False); returns the figures, before and after."""
    from .validate import error_metrics, leave_one_out
    from .validate_models import validate_models

    table = load_table(table_path)
    if not str(table.meta.get("device", "cpu")).startswith("cpu"):
        raise UserError(str(table.path), "device", "calibrate fits CPU tables to this CPU; a GPU table is "
                        "built on the GPU it prices")
    if n < 3:
        raise UserError("-n", "", f"a scale and an overhead need at least 3 detectors, got {n}")
    recipes, size = reference_detectors(table.meta, model, space, size, n, seed)
    # Timed at this machine's own speed: no reference-conv rescaling to the table's nominal one.
    result = validate_models(table.path, recipes, size, fit="affine", runs=runs, rounds=rounds, progress=progress,
                             at_table_speed=False)
    raw, measured = result.raw_ms, result.measured_ms
    before = table.meta.get("scale", 1.0) * raw + table.meta.get("overhead_ms", 0.0) / table.batch
    entry = {
        "scale": result.scale, "overhead_ms": result.overhead_ms * table.batch,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "runtime_version": machine.installed_version(str(table.meta.get("runtime", "torch"))),
        "models": result.names, "size": size, "measured_ms": [float(m) for m in measured],
        "before": error_metrics(before, measured),
        "after_in_sample": error_metrics(result.predicted_ms, measured),
        "after_leave_one_out": error_metrics(leave_one_out(raw, measured, "affine"), measured),
    }
    if store:
        machines = dict(table.meta.get(machine.MACHINES_KEY) or {})
        machines[machine.cpu_name()] = entry
        update_meta(table.path, **{machine.MACHINES_KEY: machines})
    return {"table": str(table.path), "device_name": machine.cpu_name(),
            "table_device_name": table.meta.get("device_name"), **entry}
