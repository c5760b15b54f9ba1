"""``validate``: measure random architectures end to end and score the table's predictions.

The sum of isolated op timings misses what a network adds around them (Python dispatch per
module, the pooled shortcut of stride-2 units, caches warm or cold between layers), so
``validate`` fits ``measured ~ scale x sum(ops) + overhead_ms`` by least squares on relative
error and stores both in the sidecar. It reports the errors of the raw sum, of the fit on
all architectures, and leave-one-out (each architecture predicted by a fit that did not see
it), which is the honest figure for architectures the search will meet.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np
from scipy.stats import kendalltau
from tqdm import tqdm

from ..arch import Arch
from ..archio import parse_arch
from ..atomic import atomic_write_text
from ..errors import UserError
from ..fileio import json_text
from ..runfolder import check_new_folder, owned_folder
from ..space import SearchSpace
from . import measure
from .predictor import LatencyPredictor
from .runtimes import Runner
from .table import append_row, load_table, update_meta

FITS = ("affine", "offset", "none")
MEASUREMENT_HEADER = "digest,measured_ms,spread_ms,arch\n"


@dataclass
class Validation:
    """Per-image milliseconds for each architecture, the fit, and the error figures."""

    archs: list[Arch]
    measured_ms: np.ndarray
    raw_ms: np.ndarray  # sum of op latencies per image, before scale and overhead
    scale: float
    overhead_ms: float  # whole batch
    batch: int
    fit: str
    metrics: dict = field(default_factory=dict)

    @property
    def predicted_ms(self) -> np.ndarray:
        return self.scale * self.raw_ms + self.overhead_ms / self.batch


def error_metrics(predicted: np.ndarray, measured: np.ndarray) -> dict:
    ape = np.abs(predicted - measured) / measured * 100
    tau = kendalltau(predicted, measured).statistic if len(measured) > 1 else float("nan")
    within = float(np.mean(ape <= 10) * 100)
    return {"mape_pct": float(ape.mean()), "max_ape_pct": float(ape.max()), "kendall_tau": float(tau),
            "within_10pct": within}


def fit_correction(raw: np.ndarray, measured: np.ndarray, fit: str) -> tuple[float, float]:
    """(scale, offset) minimising squared relative error of scale x raw + offset, offset >= 0.

    The offset is what a network costs beyond its ops; a negative one would price a small
    enough network below zero (it then passes every latency budget), and the loader refuses
    it. The error is a convex quadratic, so when its free minimum has a negative offset the
    constrained minimum has offset 0: a scale-only fit (``affine``) or no correction (``offset``).
    """
    if fit == "none" or len(raw) == 0:
        return 1.0, 0.0
    w = 1.0 / measured
    if fit == "offset" or len(raw) < 3:
        offset = float(np.sum((measured - raw) * w * w) / np.sum(w * w))
        return 1.0, max(offset, 0.0)
    design = np.column_stack([raw * w, w])
    (scale, offset), *_ = np.linalg.lstsq(design, np.ones_like(raw), rcond=None)
    if offset < 0:
        x = raw * w
        scale, offset = np.sum(x) / np.sum(x * x), 0.0
    if scale <= 0:  # degenerate data: fall back to an offset, never a negative slope
        return fit_correction(raw, measured, "offset")
    return float(scale), float(offset)


def leave_one_out(raw: np.ndarray, measured: np.ndarray, fit: str) -> np.ndarray:
    out = np.empty_like(raw)
    for i in range(len(raw)):
        keep = np.arange(len(raw)) != i
        scale, offset = fit_correction(raw[keep], measured[keep], fit)
        out[i] = scale * raw[i] + offset
    return out


def random_archs(space: SearchSpace, n: int, seed: int = 0, steps: int = 30) -> list[Arch]:
    """``n`` distinct random members of ``space``, the same ones for the same seed."""
    rng = random.Random(seed)
    seen, out = set(), []
    for _ in range(n * 20):
        arch = space.random_arch(rng, steps)
        if arch.key not in seen:
            seen.add(arch.key)
            out.append(arch)
        if len(out) == n:
            return out
    raise UserError(space.source, "limits", f"could only draw {len(out)} distinct architectures of {n}")


def _read_measurements(path: Path) -> dict[str, tuple[float, float]]:
    if not path.exists():
        return {}
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        parts = line.split(",", 3)
        if len(parts) == 4:
            found[parts[0]] = (float(parts[1]), float(parts[2]))
    return found


def validate_table(table_path: str | os.PathLike, space: SearchSpace, n: int = 50, seed: int = 0,
                   resolution: int | None = None, fit: str = "affine",
                   warmup: int = measure.DEFAULT_WARMUP, runs: int = measure.DEFAULT_RUNS,
                   out_dir: str | os.PathLike | None = None, update: bool = True,
                   progress: bool = True, rounds: int = 3, force: bool = False,
                   runtime: str | None = None) -> Validation:
    """Measure ``n`` random architectures of ``space`` on the table's device and compare.

    With ``out_dir``, measurements are appended to ``out_dir/measurements.csv`` as they are
    taken (a rerun resumes), and a report (JSON, plus a plot when matplotlib is installed)
    is written there; a folder holding anything else needs ``force``. With ``update``, the
    fitted scale and overhead and the figures are stored in the table's sidecar for the
    predictor to use. ``runtime`` times the networks in another runtime than the table's (how
    well do eager-PyTorch ops predict ONNX Runtime?); the sidecar is then left as it is.
    """
    if fit not in FITS:
        raise UserError("--fit", "", f"unknown fit {fit!r} (known: {', '.join(FITS)})")
    with output_folder(out_dir, force) as out_dir:
        table = load_table(table_path)
        meta = table.meta
        table_runtime = str(meta.get("runtime", "torch")).lower()  # imported tables say "TensorRT"
        runtime = runtime or table_runtime
        update = update and runtime == table_runtime  # a fit belongs to the runtime the table was timed in
        setup = _setup_like_table(meta, runtime)
        resolution = resolution or space.resolution
        raw_predictor = LatencyPredictor(load_table(table_path), for_this_machine=False)
        raw_predictor.table.meta.update(scale=1.0, overhead_ms=0.0)
        archs = random_archs(space, n, seed)
        raw = np.array([raw_predictor.predict_ms(a, resolution) for a in archs])  # fails fast on uncovered ops

        log, cache = _open_measurements(out_dir)
        todo = [a for a in archs if a.digest() not in cache]
        rounds = max(1, min(rounds, runs))
        samples = _time_round_robin(todo, rounds, runs, warmup, setup, resolution, table.batch, progress)
        _keep_measurements(todo, samples, cache, log)
        measured = np.array([cache[arch.digest()][0] / table.batch for arch in archs])
        spread = np.array([cache[arch.digest()][1] / table.batch for arch in archs])

        scale, offset = fit_correction(raw, measured, fit)
        result = Validation(archs, measured, raw, scale, offset * table.batch, table.batch, fit)
        loo = leave_one_out(raw, measured, fit)
        result.metrics = {
            "n": len(archs), "space": space.name, "resolution": resolution, "seed": seed, "fit": fit,
            "warmup": warmup, "runs": runs, "rounds": rounds, "allocator": setup.allocator,
            "calibrated": setup.reference is not None,
            "raw": error_metrics(raw, measured),
            "fitted_in_sample": error_metrics(result.predicted_ms, measured),
            "fitted_leave_one_out": error_metrics(loo, measured),
            "median_relative_spread_pct": float(np.median(spread / measured) * 100),
            "measured_ms_range": [float(measured.min()), float(measured.max())],
            "device_name": meta.get("device_name"), "threads": setup.threads, "clock": setup.clock,
            "runtime": runtime, "table_runtime": table_runtime,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        if out_dir is not None:
            atomic_write_text(out_dir / "report.json", json_text(result.metrics, indent=2) + "\n")
            plot_validation(result, loo, out_dir / "predicted_vs_measured.png", table.path)
        if update:
            update_meta(table.path, scale=scale, overhead_ms=result.overhead_ms, validation=result.metrics)
        return result


def _open_measurements(out_dir: Path | None) -> tuple[Path | None, dict[str, tuple[float, float]]]:
    """The folder's measurement log (started when new) and what an earlier run measured in it."""
    if out_dir is None:
        return None, {}
    log = out_dir / "measurements.csv"
    if not log.exists():
        atomic_write_text(log, MEASUREMENT_HEADER)
    return log, _read_measurements(log)


def _setup_like_table(meta: dict, runtime: str):
    """Networks are timed exactly as the table's ops were: same device, threads and clock; a
    calibrated table's networks are put on its nominal speed with the same reference."""
    clock = meta.get("clock", "wall")
    calibration = meta.get("calibration") or {}
    return measure.setup_device(meta["device"], meta["dtype"], meta.get("threads"),
                                "auto" if clock == "cuda-events" else clock,
                                calibrate=bool(calibration), nominal_ms=calibration.get("nominal_ms"),
                                runtime=runtime)


def _time_round_robin(todo: list, rounds: int, runs: int, warmup: int, setup, resolution: int, batch: int,
                      progress: bool) -> dict[str, list[float]]:
    """Each network's ``runs`` spread over ``rounds`` passes through the list, so a burst of load
    from other processes lands on many networks a little instead of on a few a lot; the
    statistic is the median of all of a network's runs."""
    samples: dict[str, list[float]] = {a.digest(): [] for a in todo}
    # A runtime's network is exported and compiled once (an export takes seconds) and kept
    # for every round; an eager network is rebuilt each round, so only one is held at a time.
    compiled: dict[str, Runner] = {}
    bar = tqdm(total=len(todo) * rounds, desc="validate", unit="net", disable=not progress)
    for r in range(rounds):
        share = runs // rounds + (1 if r < runs % rounds else 0)
        for arch in todo:
            digest = arch.digest()
            run = compiled.get(digest) or measure.network_runner(arch, resolution, setup, batch)
            if setup.runtime is not None:
                compiled[digest] = run
            samples[digest] += measure.sample_runs(run, setup, warmup, share)
            bar.update()
    bar.close()
    return samples


def _keep_measurements(todo: list, samples: dict, cache: dict, log: Path | None) -> None:
    """Each network's median and spread into ``cache`` and, with a log, appended to it."""
    for arch in todo:
        t = measure.summarize(samples[arch.digest()])
        # Kept exactly as the log stores them, so a resumed run computes the same figures.
        median, spread_ms = f"{t.median_ms:.6g}", f"{t.spread_ms:.6g}"
        cache[arch.digest()] = (float(median), float(spread_ms))
        if log is not None:
            text = json.dumps(arch.to_dicts(), separators=(",", ":")).replace(",", ";")
            append_row(log, f"{arch.digest()},{median},{spread_ms},{text}\n")


@contextlib.contextmanager
def output_folder(out_dir: str | os.PathLike | None, force: bool) -> Iterator[Path | None]:
    """Own ``out_dir`` while measuring: a new or empty folder, a validate's own folder (a rerun
    resumes it), or with ``force`` any folder; a second validate into it fails at once instead of
    interleaving its lines with ours."""
    if out_dir is None:
        yield None
        return
    out_dir = Path(out_dir)
    if not is_validation_folder(out_dir):
        check_new_folder(out_dir, "--out", force)
    with owned_folder(out_dir, "validation folder"):
        yield out_dir


def is_validation_folder(folder: Path) -> bool:
    """``folder`` holds a validate's measurements log: a rerun resumes it (no --force needed)."""
    log = folder / "measurements.csv"
    try:
        with open(log, encoding="utf-8") as handle:
            return handle.readline() == MEASUREMENT_HEADER
    except (OSError, UnicodeDecodeError):
        return False


def plot_validation(result: Validation, loo: np.ndarray, path: Path, title: str) -> bool:
    """Predicted-vs-measured scatter; skipped (False) when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(result.measured_ms, result.raw_ms, s=12, label="sum of ops (raw)", alpha=0.6)
    ax.scatter(result.measured_ms, loo, s=12, label="fitted, leave-one-out", alpha=0.8)
    lo = float(min(result.measured_ms.min(), result.raw_ms.min(), loo.min()))
    hi = float(max(result.measured_ms.max(), result.raw_ms.max(), loo.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel("measured ms / image")
    ax.set_ylabel("predicted ms / image")
    ax.set_title(Path(title).name)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def arch_from_measurement_line(line: str) -> Arch:
    """Rebuild the architecture stored in a measurements.csv line (for later analysis)."""
    text = line.split(",", 3)[3].replace(";", ",")
    return parse_arch(text, "json", "measurements.csv")
