"""The design run: search -> train and distil -> export and time -> report.

Each stage leaves its results in its own sub-folder and is recorded in ``stages.json`` once it
has finished (after all its files exist); a rerun skips recorded stages whose files are all
there (design/outputs.py) and resumes the one that was interrupted (the
search from its checkpoint, the trainings from ``last.pt``, the timings model by model), so a
killed design is finished by running the same command again.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


from ..atomic import atomic_write_text
from ..fileio import json_text
from ..errors import UserError
from ..latency.machine import mismatch_note
from ..latency.table import resolve_table_path
from ..preflight import design_packages, require
from ..runfolder import LOCK_NAME, check_new_folder, owned_folder
from . import measure, report, search_stage, train
from .outputs import missing_output
from .match import MATCH_NAME, match_target, matched_latency, store_match
from .spec import SPEC_NAME, DesignSpec, check_spec, dataset_classes, read_data_section, spec_change, store_spec

STAGES = ("search", "train", "measure", "report")
RECORD_NAME = "stages.json"


@dataclass(frozen=True)
class DesignResult:
    out: Path
    models: list[dict]  # one row per trained model, as in the report
    chosen: dict | None  # the deployed model's row; None when no model met the budget
    report: Path


# A path inside the design folder is stored relative to it, so a moved or copied folder still
# resumes and reports: "./train/m1". Older records hold absolute paths, read as they are.
HERE = "./"


def _stored_paths(value, out: Path, inward: bool):
    """``value`` with every path inside ``out`` made relative (``inward``) or absolute again."""
    if isinstance(value, dict):
        return {k: _stored_paths(v, out, inward) for k, v in value.items()}
    if isinstance(value, list):
        return [_stored_paths(v, out, inward) for v in value]
    if isinstance(value, str) and not inward and value.startswith(HERE):
        return str(out / value[len(HERE):])
    if isinstance(value, str) and inward and Path(value).is_absolute() and Path(value).is_relative_to(out):
        return HERE + Path(value).relative_to(out).as_posix()
    return value


def read_record(out: Path) -> dict:
    """The finished stages recorded in ``out``'s stages.json, paths absolute."""
    path = out / RECORD_NAME
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise UserError(str(path), "", f"not readable JSON ({err}); delete it to redo every stage") from None
    if not isinstance(doc, dict):
        raise UserError(str(path), "", "expected a mapping of finished stages")
    return _stored_paths(doc, out.resolve(), inward=False)


def _mark_done(out: Path, stage: str, details: dict) -> None:
    doc = read_record(out)
    doc[stage] = details
    stored = _stored_paths(doc, out.resolve(), inward=True)
    atomic_write_text(out / RECORD_NAME, json_text(stored, indent=2) + "\n")  # strict: a NaN AP is null


# The stage folders a design writes besides its settings, stages.json, the report and its figures.
STAGE_FOLDERS = ("search", "train", "measure", "deploy")


def _started(out: Path) -> bool:
    """Whether the design in ``out`` produced anything: a finished stage or a search file."""
    search_folder = out / "search"
    return bool(read_record(out)) or (search_folder.is_dir() and any(
        p.name != LOCK_NAME for p in search_folder.iterdir()))


def _clear_results(out: Path) -> None:
    """Remove what a design with other settings left in ``out`` (and nothing else)."""
    from .report import FIGURES, REPORT_NAME

    for name in (RECORD_NAME, REPORT_NAME, MATCH_NAME, *FIGURES.values(), *STAGE_FOLDERS):
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.is_file():
            path.unlink()


def _calibrate_table(spec: DesignSpec, log: Callable[[str], None], progress: bool) -> None:
    """Fit the design's table to this machine on its own model, space and size, before the
    search prices a single candidate with it."""
    from ..latency.machine_fit import calibrate_table

    path = resolve_table_path(spec.latency_db)
    log(f"calibrate: the table {path.stem} was measured on another machine; fitting it to this one "
        f"(--no-calibrate to use it as it is)")
    fit = calibrate_table(path, model=spec.model, space=spec.space, size=spec.size, progress=progress)
    log(f"calibrate: MAPE {fit['before']['mape_pct']:.1f}% as it was, {fit['after_leave_one_out']['mape_pct']:.1f}% "
        f"fitted (leave-one-out, {len(fit['models'])} detectors); scale {fit['scale']:.3f}, overhead "
        f"{fit['overhead_ms']:.3f} ms, stored in its sidecar for {fit['device_name']}")


def design(spec: DesignSpec, out: str | Path, progress: bool = True, log: Callable[[str], None] = print,
           force: bool = False, calibrate: bool = True) -> DesignResult:
    """Run (or finish) a design in ``out``; see the module docstring. ``calibrate``: a table
    measured on another CPU is first fitted to this one (``latency calibrate``); False only
    says so."""
    runtime = str(spec.runtime).strip().lower()
    # Before the match budget times a file, and long before the measure stage exports.
    require(design_packages(runtime), "design", f"a design deployed in {runtime} (ONNX export, then timing)")
    match = None
    if match_target(spec.budget) is not None:  # latency=match:PATH: that file's measured latency
        spec, match = matched_latency(spec, Path(out), log)
    spec = check_spec(spec)
    note = mismatch_note(resolve_table_path(spec.latency_db))
    if note and calibrate:
        _calibrate_table(spec, log, progress)
    elif note:  # on stderr, as search says it: the log is the stages' own account
        print(note, file=sys.stderr)
    data = read_data_section(spec.data)
    classes = dataset_classes(data)
    out = Path(out)
    if not (out / RECORD_NAME).is_file() and not (out / SPEC_NAME).is_file():
        check_new_folder(out, "--out", force=force)
    with owned_folder(out, "design folder"):
        started = _started(out)
        change = spec_change(out, spec, started, force)
        if change != "same" or "search" not in read_record(out):
            search_stage.check(spec, len(classes))  # before the folder records these settings
        if change == "replace":
            _clear_results(out)
        if change != "same":
            store_spec(out, spec)
        if match is not None:
            store_match(out, match)
        done = read_record(out)
        steps = {
            "search": lambda: search_stage.run(spec, len(classes), out / "search", progress),
            "train": lambda: train.run(spec, data, len(classes), out / "train", read_record(out)["search"], progress,
                                       log),
            "measure": lambda: measure.run(spec, len(classes), out / "measure", read_record(out)["train"], log),
            "report": lambda: report.run(spec, out, read_record(out), classes, log),
        }
        for stage in STAGES:
            if stage in done:
                missing = missing_output(out, stage, done[stage])
                if missing is None:
                    log(f"{stage}: finished earlier, skipped")
                    continue
                log(f"{stage}: recorded as finished but {missing} is missing; running it and what follows again")
                done = {}
            log(f"{stage}: running")
            _mark_done(out, stage, steps[stage]())
        final = read_record(out)["report"]
        return DesignResult(out, final["models"], final.get("chosen"), out / final["report"])


