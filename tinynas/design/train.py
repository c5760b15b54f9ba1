"""Stage 2: train the largest rung, then distil each smaller rung from the one above it.

The stage writes one training recipe per rung (the model recipe with the searched backbone,
the user's data, the design's epochs, size, batch and seed) and a chain file over them, then
runs the chain: the same files a user could rerun or edit by hand with ``tinynas distill-chain``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from ..detect.model_recipe import parse_model_recipe, resolve_model_path
from ..distill.chain import load_chain, run_chain
from ..atomic import atomic_write_yaml
from ..fileio import read_yaml
from .init_match import checkpoint_for, gather_checkpoints
from .spec import DesignSpec


def stage_name(label: str) -> str:
    return label.removeprefix("best-")


def _recipe_doc(spec: DesignSpec, data: dict, num_classes: int, arch: str, name: str) -> dict:
    model_path = resolve_model_path(spec.model)
    doc = read_yaml(model_path, "model recipe")
    backbone = dict(doc.get("backbone") or {})
    backbone["arch"] = arch
    head = {**(doc.get("head") or {}), "num_classes": num_classes}
    return {**{k: v for k, v in doc.items() if k != "name"}, "name": name, "backbone": backbone, "head": head,
            "data": {**data, "size": spec.size},
            "train": {"epochs": spec.epochs, "batch_size": spec.batch_size, "seed": spec.seed}}


def distinct_rungs(rungs: list[dict]) -> tuple[list[dict], list[dict]]:
    """The rungs with an architecture of their own (of equal ones the lowest limit's), and the
    merged ones: a larger rung that found the same network as a smaller one lies beyond what the
    space reaches, and distilling a network from itself teaches nothing."""
    kept, merged, seen = [], [], {}
    for rung in sorted(rungs, key=lambda r: r["limit_ms"]):
        blocks = json.dumps(read_yaml(Path(rung["arch"]), "searched arch")["blocks"], sort_keys=True)
        if blocks in seen:
            merged.append({"rung": stage_name(rung["label"]), "limit_ms": rung["limit_ms"], "into": seen[blocks]})
        else:
            seen[blocks] = stage_name(rung["label"])
            kept.append(rung)
    return kept, merged


def _initial_weights(doc: dict, name: str, checkpoints: list[Path], log: Callable[[str], None]) -> Path | None:
    """The ``--init`` checkpoint of this rung's architecture, said in the log either way."""
    found = checkpoint_for(parse_model_recipe(doc, f"rung {name}"), checkpoints)
    if found is None:
        log(f"train: rung {name} starts from scratch: none of the {len(checkpoints)} --init checkpoints holds "
            "its architecture")
    else:
        log(f"train: rung {name} starts from {found}")
    return found


def run(spec: DesignSpec, data: dict, num_classes: int, folder: Path, searched: dict, progress: bool,
        log: Callable[[str], None]) -> dict:
    rungs, merged = distinct_rungs(searched["rungs"])
    for m in merged:
        log(f"train: rung {m['rung']} ({m['limit_ms']:.4g} ms) found {m['into']}'s architecture: the space reaches "
            "no further, so it is trained once")
    rungs.reverse()  # teachers first
    checkpoints = gather_checkpoints(spec.init) if spec.init else []
    stages, inits = [], []
    for rung in rungs:
        name = stage_name(rung["label"])
        recipe = folder / "recipes" / f"{name}.yaml"
        doc = _recipe_doc(spec, data, num_classes, rung["arch"], name)
        init = _initial_weights(doc, name, checkpoints, log) if checkpoints else None
        if init is not None:
            doc["train"]["init"] = str(init)
        inits.append(str(init or ""))
        atomic_write_yaml(recipe, doc)
        stages.append({"name": name, "recipe": str(recipe.resolve())})
    chain_file = folder / "chain.yaml"
    atomic_write_yaml(chain_file, {"name": "design", "out": str(folder.resolve()), "baseline": spec.baselines,
                            "stages": stages})
    rows = run_chain(load_chain(chain_file), progress=progress, log=log)
    models = []
    for rung, row, init in zip(rungs, rows, inits):
        run_dir = folder / row["stage"]
        plain_dir = folder / f"{row['stage']}-plain"
        models.append({"name": row["stage"], "teacher": row["teacher"], "limit_ms": rung["limit_ms"], "init": init,
                       "run": str(run_dir.resolve()), "worth": row["worth"],
                       "plain_run": str(plain_dir.resolve()) if row["AP_plain"] == row["AP_plain"] else ""})
    return {"models": models, "chain": str(chain_file.resolve()), **({"merged": merged} if merged else {})}
