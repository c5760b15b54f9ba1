"""Stage 3: re-parameterise and export each trained model, and time the exported file.

The file timed is the file deployed: each model's ``best.pt`` (``last.pt`` when no evaluation
kept one) is fused and exported to ONNX, and that ONNX graph is run end to end in the design's
runtime with the latency table's device settings (threads, precision), its timed runs spread
over rounds. Each model's measurement is written as soon as it exists, so a killed stage
resumes at the next model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from ..atomic import atomic_write_text
from ..checkpoint import load_detector
from ..deploy.onnx_export import export_onnx
from ..latency import measure as timing
from ..latency.table import load_table
from ..train.run import TrainRun
from .spec import DesignSpec

ROUNDS = 3


def _timer(spec: DesignSpec, onnx_path: Path, model, setup):
    x = np.random.default_rng(0).standard_normal((1, 3, spec.size, spec.size)).astype(np.float32)
    if setup.runtime is not None:
        return setup.runtime.compile(onnx_path.read_bytes(), {"images": x})
    import torch

    from ..nn.reparam import reparameterize

    fused = reparameterize(model).eval().to(setup.device, setup.dtype)
    images = torch.from_numpy(x).to(setup.device, setup.dtype)

    def run():
        with torch.no_grad():
            return fused(images)
    return run


def run(spec: DesignSpec, num_classes: int, folder: Path, trained: dict, log: Callable[[str], None]) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    meta = load_table(spec.latency_db).meta
    clock = meta.get("clock", "wall")
    setup = timing.setup_device(meta["device"], meta["dtype"], meta.get("threads"),
                                 "auto" if clock == "cuda-events" else clock, runtime=spec.runtime)
    results = []
    for model in trained["models"]:
        record_path = folder / f"{model['name']}.json"
        if record_path.is_file():
            results.append(json.loads(record_path.read_text(encoding="utf-8")))
            log(f"{model['name']}: measured earlier")
            continue
        weights = TrainRun(model["run"]).best_checkpoint()
        detector, _ = load_detector(weights)
        onnx_path = folder / f"{model['name']}.onnx"
        export_onnx(detector, onnx_path, size=spec.size, force=True)
        timer = _timer(spec, onnx_path, detector, setup)
        samples: list[float] = []
        for r in range(ROUNDS):
            share = spec.timed_runs // ROUNDS + (1 if r < spec.timed_runs % ROUNDS else 0)
            samples += timing.sample_runs(timer, setup, timing.DEFAULT_WARMUP, share)
        median_ms = timing.summarize(samples).median_ms
        record = {"name": model["name"], "weights": str(weights), "onnx": str(onnx_path.resolve()),
                  "measured_ms": median_ms, "samples_ms": samples, "runtime": spec.runtime,
                  "threads": meta.get("threads"), "device": meta["device"], "size": spec.size}
        atomic_write_text(record_path, json.dumps(record, indent=2) + "\n")
        log(f"{model['name']}: {median_ms:.2f} ms per image in {spec.runtime}")
        results.append(record)
    return {"models": results}
