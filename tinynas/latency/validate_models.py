"""Whole-detector validation: predicted against measured latency of complete detectors.

``validate_table`` checks a table on random backbones of a space; this checks it where a user
ships it: each detector (backbone, neck and head, fused) is priced from the table's ops
(``detect.conv_ops``) and timed end to end in the same runtime and settings the table was
built with. The same fit and error figures as ``validate`` follow; the fit's overhead now
also holds what is not a convolution (upsampling, concatenation, the SPP pools).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from ..atomic import atomic_write_text
from ..errors import UserError
from ..fileio import json_text
from . import measure
from .predictor import LatencyPredictor
from .table import load_table
from .validate import FITS, error_metrics, fit_correction, leave_one_out, output_folder


@dataclass
class ModelValidation:
    names: list[str]
    measured_ms: np.ndarray  # per image
    raw_ms: np.ndarray  # sum of the detector's op latencies per image, unscaled
    scale: float
    overhead_ms: float  # per image
    metrics: dict = field(default_factory=dict)

    @property
    def predicted_ms(self) -> np.ndarray:
        return self.scale * self.raw_ms + self.overhead_ms


def validate_models(table_path: str | os.PathLike, recipes: Sequence, size: int, fit: str = "affine",
                    warmup: int = measure.DEFAULT_WARMUP, runs: int = measure.DEFAULT_RUNS, rounds: int = 3,
                    out_dir: str | os.PathLike | None = None, force: bool = False, runtime: str | None = None,
                    progress: bool = True, at_table_speed: bool = True) -> ModelValidation:
    """Price and time each detector of ``recipes`` at ``size x size``; compare.

    ``at_table_speed``: a calibrated table's timings are rescaled to the speed its reference
    conv had when the table was built (the same machine, drifting); False keeps this machine's
    own speed (still steadied by the reference), for a table measured elsewhere."""
    from ..detect.conv_ops import detector_op_counts

    if fit not in FITS:
        raise UserError("--fit", "", f"unknown fit {fit!r} (known: {', '.join(FITS)})")
    if len(recipes) < 2:
        raise UserError("--models", "", "give at least two detectors to compare")
    with output_folder(out_dir, force) as out_dir:
        table = load_table(table_path)
        meta = table.meta
        calibration = meta.get("calibration") or {}
        clock = meta.get("clock", "wall")
        runtime = runtime or str(meta.get("runtime", "torch")).lower()
        setup = measure.setup_device(meta["device"], meta["dtype"], meta.get("threads"),
                                     "auto" if clock == "cuda-events" else clock,
                                     calibrate=bool(calibration),
                                     nominal_ms=calibration.get("nominal_ms") if at_table_speed else None,
                                     runtime=runtime)
        predictor = LatencyPredictor(table)
        names = [recipe.name or f"model{i}" for i, recipe in enumerate(recipes)]
        # Every detector is priced first: a table that misses an op fails before any timing.
        raw = np.array([predictor.ops_raw_ms(detector_op_counts(r, size, table.batch)) for r in recipes]) / table.batch
        samples: list[list[float]] = [[] for _ in recipes]
        rounds = max(1, min(rounds, runs))
        bar = tqdm(total=len(recipes) * (rounds + 1), desc="validate models", unit="model", disable=not progress)
        runners = []
        for recipe in recipes:
            runners.append(measure.detector_runner(recipe, size, setup, table.batch))
            bar.update()
        for r in range(rounds):
            share = runs // rounds + (1 if r < runs % rounds else 0)
            for i, run in enumerate(runners):
                samples[i] += measure.sample_runs(run, setup, warmup, share)
                bar.update()
        bar.close()
        measured = np.array([measure.summarize(s).median_ms for s in samples]) / table.batch
        scale, offset = fit_correction(raw, measured, fit)
        result = ModelValidation(names, measured, raw, scale, offset)
        result.metrics = {
            "models": names, "size": size, "runtime": runtime, "fit": fit, "runs": runs, "rounds": rounds,
            "raw": error_metrics(raw, measured),
            "fitted_in_sample": error_metrics(result.predicted_ms, measured),
            "fitted_leave_one_out": error_metrics(leave_one_out(raw, measured, fit), measured),
            "scale": scale, "overhead_ms": offset, "device_name": meta.get("device_name"),
            "per_model": [{"model": n, "measured_ms": float(m), "ops_ms": float(p)}
                          for n, m, p in zip(names, measured, raw)],
        }
        if out_dir is not None:
            atomic_write_text(Path(out_dir) / "models_report.json", json_text(result.metrics, indent=2) + "\n")
        return result
