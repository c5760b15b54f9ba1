"""What each finished design stage leaves behind, so a rerun trusts stages.json only as far as
its files go: a stage whose outputs are gone (a kill between a file and its record under an
older version, a user's clean-up) is run again, and every stage after it."""

from __future__ import annotations

from pathlib import Path

from ..train.run import TrainRun


def _training_files(run_dir: str) -> list[Path]:
    run = TrainRun(run_dir)
    files = [run.recipe_path, run.last_path, run.metrics_path]
    if any(row.get("AP") not in (None, "") for row in run.metrics()):
        files.append(run.best_path)  # an evaluated run has its best weights
    return files


def stage_outputs(out: Path, stage: str, details: dict) -> list[Path]:
    """The files the recorded ``stage`` (its stages.json entry ``details``) must have left."""
    if stage == "search":
        return [Path(rung["arch"]) for rung in details["rungs"]]
    if stage == "train":
        return [f for model in details["models"] for run in (model["run"], model.get("plain_run")) if run
                for f in _training_files(run)]
    if stage == "measure":
        return [p for model in details["models"] for p in (out / "measure" / f"{model['name']}.json",
                                                           Path(model["onnx"]))]
    if stage == "report":
        deployed = ["model.onnx", "recipe.yaml", "classes.json"] if details.get("chosen") else []
        return [out / details["report"], *(out / "deploy" / name for name in deployed)]
    raise ValueError(f"unknown design stage {stage!r}")


def missing_output(out: Path, stage: str, details: dict) -> Path | None:
    """The first output of ``stage`` that is not there; None when all are. An entry that does not
    read as the stage's record names stages.json itself: the stage is run again then too."""
    try:
        paths = stage_outputs(out, stage, details)
    except (KeyError, TypeError, ValueError, AttributeError):
        return out / "stages.json"
    return next((p for p in paths if not p.is_file()), None)
