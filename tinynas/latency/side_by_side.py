"""Several ONNX models timed side by side, in the same runtime, thread count and rounds.

A shared machine's speed drifts by 10-20% over an hour, so two models timed one after the
other can differ by the drift alone. Here every model is compiled first, then each round
times every model in turn — the order rotated each round so no model always runs first (or
right after the heaviest) — and a model's figure is the median over all its rounds. The
ratio of two models then holds even when the absolute times move; the per-round medians are
kept so the drift itself can be read.

The settings are those of a latency table when one is named (runtime, device, threads,
precision and clock from its sidecar): models are timed exactly as the table's ops were,
which is what makes a searched model's prediction and a peer's measurement comparable.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import UserError
from . import measure as timing
from .onnx_file import OnnxImageModel, read_onnx_image_model

DEFAULT_ROUNDS = 11
DEFAULT_RUNS = 30
ROUND_WARMUP = 3  # untimed runs before a model's runs in each round: its caches are cold after the others


@dataclass(frozen=True)
class ModelTiming:
    name: str
    path: str
    sha256: str
    median_ms: float
    q25_ms: float
    q75_ms: float
    min_ms: float
    round_medians_ms: tuple[float, ...]


@dataclass(frozen=True)
class SideBySide:
    models: tuple[ModelTiming, ...]
    size: int
    rounds: int
    runs_per_round: int
    order: tuple[tuple[str, ...], ...]  # the models' order in each round
    settings: dict  # runtime, version, provider, device, threads, clock, date

    def by_name(self, name: str) -> ModelTiming:
        for model in self.models:
            if model.name == name:
                return model
        raise KeyError(name)

    def to_json(self) -> dict:
        doc = asdict(self)
        doc["order"] = [list(names) for names in self.order]
        for model in doc["models"]:
            model["round_medians_ms"] = list(model["round_medians_ms"])
        return doc


def side_by_side_from_json(doc: dict) -> SideBySide:
    """The inverse of ``SideBySide.to_json`` (a timing kept in a file, read back)."""
    models = tuple(ModelTiming(**{**m, "round_medians_ms": tuple(m["round_medians_ms"])}) for m in doc["models"])
    return SideBySide(models, doc["size"], doc["rounds"], doc["runs_per_round"],
                      tuple(tuple(o) for o in doc["order"]), doc["settings"])


def timing_settings(db: str | Path | None, runtime: str | None, threads: int | None,
                    device: str | None = None) -> dict:
    """Runtime, device, precision, threads and clock: from a table's sidecar, or as given.

    A runtime or thread count given beside a table must agree with the table: a comparison
    timed otherwise than the table's ops would not say what the table predicts.
    """
    if db:
        from .table import load_table, sidecar_path

        table = load_table(db)
        meta, where = table.meta, str(sidecar_path(table.path))
        built_in = str(meta.get("runtime", "torch")).lower()
        if runtime and runtime.lower() != built_in:
            raise UserError(where, "runtime", f"the table was measured in {built_in}, but {runtime.lower()} "
                            "was asked for: time in the table's runtime or name a table of that runtime")
        if threads is not None and meta.get("threads") is not None and int(meta["threads"]) != threads:
            raise UserError(where, "threads", f"the table was measured with {meta['threads']} thread(s), but "
                            f"{threads} were asked for")
        if device and device != meta.get("device"):
            raise UserError(where, "device", f"the table was measured on {meta.get('device')}, not {device}")
        settings = {"runtime": built_in, "device": meta.get("device", "cpu"), "dtype": meta.get("dtype", "fp32"),
                    "threads": int(meta.get("threads") or 1), "clock": meta.get("clock", "auto"),
                    "table": str(table.path)}
    else:
        settings = {"runtime": (runtime or "onnxruntime").lower(), "device": device or "cpu", "dtype": "fp32",
                    "threads": threads or 1, "clock": "auto", "table": None}
    if settings["runtime"] == "torch":
        raise UserError(str(settings["table"] or "--runtime"), "runtime",
                        "ONNX files are timed in a deployment runtime (onnxruntime, openvino, tensorrt), "
                        "not in eager torch: give a runtime table (tinynas latency build --runtime ...)")
    return settings


def unique_names(paths: Sequence[str | Path]) -> list[str]:
    """Each file's stem, made unique with its parent folder's name where stems repeat."""
    stems = [Path(p).stem for p in paths]
    names = [f"{Path(p).parent.name}/{s}" if stems.count(s) > 1 else s for p, s in zip(paths, stems)]
    if len(set(names)) != len(names):
        names = [f"{n}#{i}" for i, n in enumerate(names)]
    return names


def time_side_by_side(paths: Sequence[str | Path], size: int, db: str | Path | None = None,
                      runtime: str | None = None, threads: int | None = None, rounds: int = DEFAULT_ROUNDS,
                      runs: int = DEFAULT_RUNS, names: Sequence[str] | None = None,
                      device: str | None = None) -> SideBySide:
    """Time ``paths`` (ONNX files) interleaved over ``rounds`` rounds of ``runs`` runs each."""
    if not paths:
        raise UserError("FILE", "", "name at least one ONNX file to time")
    for value, flag in ((size, "--size"), (rounds, "--rounds"), (runs, "--runs")):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserError(flag, "", f"must be a positive whole number, got {value!r}")
    names = list(names) if names is not None else unique_names(paths)
    if len(names) != len(paths) or len(set(names)) != len(names):
        raise UserError("--name", "", f"expected {len(paths)} distinct names, got {names}")
    files: list[OnnxImageModel] = [read_onnx_image_model(p, size, "input") for p in paths]
    settings = timing_settings(db, runtime, threads, device)
    clock = settings["clock"]
    setup = timing.setup_device(settings["device"], settings["dtype"], settings["threads"],
                                "auto" if clock == "cuda-events" else clock, runtime=settings["runtime"])
    runners = {}
    for name, model in zip(names, files):
        try:
            runners[name] = setup.runtime.compile(model.model, model.inputs_at(size))
        except UserError:
            raise
        except Exception as err:  # the runtime refused the graph: say which file, in one line
            first = str(err).strip().splitlines()[0] if str(err).strip() else err.__class__.__name__
            raise UserError(str(model.path), "", f"{settings['runtime']} could not compile it: {first[:300]}") from None
    samples: dict[str, list[list[float]]] = {name: [] for name in names}
    order = []
    for r in range(rounds):
        shift = r % len(names)
        this_round = names[shift:] + names[:shift]
        order.append(tuple(this_round))
        for name in this_round:
            samples[name].append(timing.sample_runs(runners[name], setup, ROUND_WARMUP, runs))
    models = []
    for name, model in zip(names, files):
        flat = [ms for round_ in samples[name] for ms in round_]
        q25, q50, q75 = np.percentile(flat, [25, 50, 75])
        models.append(ModelTiming(name, str(model.path), model.sha256, float(q50), float(q25), float(q75),
                                  float(min(flat)), tuple(float(statistics.median(x)) for x in samples[name])))
    record = setup.record()
    settings = {**settings, "clock": setup.clock, "threads": setup.threads,
                "device_name": record.get("device_name"), "runtime_version": record.get("runtime_version"),
                "provider": record.get("provider"),
                "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return SideBySide(tuple(models), size, rounds, runs, tuple(order), settings)
