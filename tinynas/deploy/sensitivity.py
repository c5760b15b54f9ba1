"""Which convolutions int8 hurts most: each quantized alone, the model's outputs against float.

YOLOv6's answer to re-parameterised detectors that lose accuracy in int8 is to find the layers
most sensitive to quantization and keep them in float. Here every convolution of the float
export is quantized alone (the activation ranges calibrated once, then reused for each layer:
onnxruntime's calibration cache) and the model's outputs on the calibration images are compared
with the float model's: MSE, SNR in dB (``10 log10(sum ref^2 / sum (ref - q)^2)``) and cosine
similarity, per output (``scores``, ``boxes``). Layers are ranked by the SNR of the output each
damages most, lowest (most sensitive) first; ``export --int8 keep_float_top=K`` keeps the first K in
float. With a scorer (``quant sensitivity --val-images --val-annotations``), the ``score_top`` most
sensitive layers are also scored as the issue's users judge a model: the AP on val with that layer
alone in int8, against the float export's.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .quantize import QUANTIZED_OPS, quantize_onnx


@dataclass(frozen=True)
class LayerSensitivity:
    node: str  # the ONNX node's name
    weight: str  # its weight's name: the torch module path (``neck.conv3.conv.weight``)
    mse: dict[str, float]
    snr_db: dict[str, float]
    cosine: dict[str, float]
    ap: float | None = None  # the AP on val with this layer alone in int8; None when not scored
    ap_drop: float | None = None  # the float export's AP minus ``ap``, in AP points

    @property
    def worst_snr_db(self) -> float:
        """The SNR of the output it damages most (a head branch's conv leaves the other output exact)."""
        return min(self.snr_db.values())


def _outputs(path: Path, inputs: Sequence[np.ndarray]) -> list[list[np.ndarray]]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return [session.run(None, {name: x}) for x in inputs]


def _compare(reference: list[list[np.ndarray]], got: list[list[np.ndarray]], names: Sequence[str]):
    mse, snr, cosine = {}, {}, {}
    for k, name in enumerate(names):
        ref = np.concatenate([r[k].astype(np.float64).ravel() for r in reference])
        out = np.concatenate([g[k].astype(np.float64).ravel() for g in got])
        noise = float(np.sum((ref - out) ** 2))
        signal = float(np.sum(ref ** 2))
        mse[name] = noise / ref.size
        snr[name] = math.inf if noise == 0 else 10 * math.log10(max(signal, 1e-30) / noise)
        norms = float(np.linalg.norm(ref) * np.linalg.norm(out))
        cosine[name] = float(ref @ out) / norms if norms > 0 else 1.0
    return mse, snr, cosine


def layer_sensitivity(float_path: str | os.PathLike, inputs: Sequence[np.ndarray], method: str = "minmax",
                      activations: str = "uint8", progress=None, score: Callable[[Path], float] | None = None,
                      score_top: int = 0) -> list[LayerSensitivity]:
    """Every quantizable convolution of ``float_path``, most sensitive first. ``score``: a model
    file's AP (the float export's first); the ``score_top`` first layers get their AP alone in int8."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(float_path))
    convs = [node.name for node in model.graph.node if node.op_type in QUANTIZED_OPS]
    weights = {node.name: node.input[1] for node in model.graph.node if node.op_type in QUANTIZED_OPS}
    names = [o.name for o in ort.InferenceSession(str(float_path), providers=["CPUExecutionProvider"]).get_outputs()]
    reference = _outputs(Path(float_path), inputs)
    found = []
    with tempfile.TemporaryDirectory() as work:
        ranges = Path(work) / "ranges.json"

        def alone(node: str) -> Path:
            single = Path(work) / "single.onnx"
            quantize_onnx(float_path, single, inputs, method, keep_float=[c for c in convs if c != node],
                          activations=activations, ranges_cache=ranges)
            return single

        scored = min(score_top, len(convs)) if score is not None else 0
        total = len(convs) + scored
        for i, node in enumerate(convs):
            mse, snr, cosine = _compare(reference, _outputs(alone(node), inputs), names)
            found.append(LayerSensitivity(node, weights[node], mse, snr, cosine))
            if progress is not None:
                progress(i + 1, total)
        ranked = sorted(found, key=lambda s: s.worst_snr_db)
        if scored:
            float_ap = score(Path(float_path))
            for i in range(scored):
                ap = score(alone(ranked[i].node))
                ranked[i] = replace(ranked[i], ap=ap, ap_drop=(float_ap - ap) * 100)
                if progress is not None:
                    progress(len(convs) + i + 1, total)
    return ranked


def write_sensitivity(rows: Sequence[LayerSensitivity], out: Path) -> tuple[Path, Path]:
    """``sensitivity.csv`` (one row per layer, most sensitive first) and ``sensitivity.png``
    (each layer's worst SNR, in the table's order) in the folder ``out``."""
    import csv
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..atomic import atomic_write_bytes, atomic_write_text

    outputs = list(rows[0].snr_db) if rows else []
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["rank", "node", "weight", "worst_snr_db", *[f"{k}_{o}" for o in outputs
                                                                for k in ("snr_db", "mse", "cosine")],
                     "ap_alone_int8", "ap_drop_points"])
    for rank, r in enumerate(rows, 1):
        writer.writerow([rank, r.node, r.weight, f"{r.worst_snr_db:.3f}",
                         *[v for o in outputs for v in (f"{r.snr_db[o]:.3f}", f"{r.mse[o]:.6g}", f"{r.cosine[o]:.6f}")],
                         "" if r.ap is None else f"{r.ap:.5f}", "" if r.ap_drop is None else f"{r.ap_drop:.3f}"])
    csv_path, png_path = out / "sensitivity.csv", out / "sensitivity.png"
    atomic_write_text(csv_path, buffer.getvalue())
    fig, ax = plt.subplots(figsize=(max(6.0, 0.12 * len(rows)), 3.5))
    ax.bar(range(len(rows)), [min(r.worst_snr_db, 120) for r in rows], color="C3")
    ax.set_xlabel("convolution, most sensitive first")
    ax.set_ylabel("SNR of the most damaged output (dB)")
    ax.set_title("int8 sensitivity: each convolution quantized alone")
    image = io.BytesIO()
    fig.tight_layout()
    fig.savefig(image, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(png_path, image.getvalue())
    return csv_path, png_path
