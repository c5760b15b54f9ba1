"""Post-training int8 quantization of an exported detector, for onnxruntime.

Static quantization in onnxruntime's QDQ form (QuantizeLinear/DequantizeLinear pairs around
each quantized tensor, which onnxruntime fuses into int8 kernels) of every convolution: weights
int8, per output channel, symmetric; activations uint8 with zero points (onnxruntime's fast path
on x86: 2.3x float32's speed for tinynas-n at 320 px on this VM's CPU, where symmetric int8
activations ran 1.09x) or int8 symmetric (TensorRT's form), their ranges from a calibration set
of the user's own images prepared as predict prepares them (letterboxed to the model's size, in
[0, 1]). The calibration method is onnxruntime's: ``minmax`` (the observed range), ``entropy``
(the range minimising the KL divergence of the quantized histogram, TensorRT's) or
``percentile`` (the 99.999th percentile of |x|, clipping outliers). Layers named in
``keep_float`` stay float32. The float model's metadata (classes, sizes, pre-processing) is
carried into the quantized file, with ``precision`` set to ``int8``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..atomic import atomic_write_bytes
from ..errors import UserError

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
# Convolutions only: the head's decoding after them (sigmoid, the DFL softmax and its integral)
# turns int8 steps into whole pixels of box and whole points of probability.
QUANTIZED_OPS = ["Conv"]
ACTIVATION_TYPES = ("uint8", "int8")
INSTALL = 'pip install -e ".[export]"'


def calibration_images(source: str | os.PathLike, count: int, seed: int = 0) -> list[Path]:
    """``count`` image files drawn at random (seeded) from the folder ``source`` (all of them when
    it holds fewer); a folder without images is a one-line error naming it."""
    from ..detect.predict import list_images

    path = Path(source)
    if not path.is_dir():
        raise UserError(str(source), "", "--calib: expected a folder of calibration images (e.g. the training "
                                         "images)")
    files = list_images(path)
    if len(files) <= count:
        return files
    return sorted(random.Random(seed).sample(files, count))


def calibration_inputs(files: Sequence[Path], size: int) -> list[np.ndarray]:
    """Each file as the model takes it: ``float32 [1, 3, size, size]`` in [0, 1], letterboxed."""
    from ..detect.predict import prepared_input

    inputs = []
    for file in files:
        try:
            inputs.append(prepared_input(file, size).numpy().astype(np.float32))
        except UserError:
            raise
        except Exception as err:  # an unreadable image: name it, do not quantize on less than asked
            raise UserError(str(file), "", f"--calib: not a readable image ({type(err).__name__})") from None
    return inputs


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over prepared inputs."""

    def __init__(self, input_name: str, inputs: Sequence[np.ndarray]):
        self._items = iter([{input_name: x} for x in inputs])

    def get_next(self):
        return next(self._items, None)


@contextlib.contextmanager
def _quiet_quantizer():
    """onnxruntime's quantizer prints its calibration progress and logs advice on the root
    logger: neither is for the user of an export."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


@dataclass(frozen=True)
class QuantizeResult:
    path: Path
    method: str
    images: int  # calibration images used
    quantized_nodes: int  # QuantizeLinear nodes in the graph
    kept_float: tuple[str, ...]


def quantize_onnx(float_path: str | os.PathLike, out: str | os.PathLike, inputs: Sequence[np.ndarray],
                  method: str = "minmax", keep_float: Sequence[str] = (), activations: str = "uint8",
                  ranges_cache: str | os.PathLike | None = None,
                  range_overrides: dict[str, tuple[float, float]] | None = None) -> QuantizeResult:
    """Write the int8 form of the float ONNX model ``float_path`` to ``out`` (atomically).

    ``activations``: ``uint8`` (asymmetric, with zero points: onnxruntime's fast path on x86, whose
    int8 kernels multiply unsigned activations by signed weights) or ``int8`` (symmetric, as
    TensorRT requires). ``ranges_cache``: a file keeping the calibrated ranges, computed on the
    first call and reused by later ones (quantizing the same model differently, layer by layer).
    ``range_overrides``: (low, high) of named tensors, used instead of their calibrated ranges (a
    quantization-aware training's observed ranges, ``deploy/qat_export.py``)."""
    try:
        import onnx
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    except ImportError:
        raise UserError("--int8", "", f"int8 export needs onnx and onnxruntime; {INSTALL}") from None
    if activations not in ACTIVATION_TYPES:
        raise UserError("--activations", activations, f"expected one of {', '.join(ACTIVATION_TYPES)}")
    if method not in CALIBRATION_METHODS:
        raise UserError("--calib-method", method, f"expected one of {', '.join(CALIBRATION_METHODS)}")
    if not inputs:
        raise UserError("--calib", "", "no calibration images")
    model = onnx.load(str(float_path))
    names = {node.name for node in model.graph.node}
    unknown = [name for name in keep_float if name not in names]
    if unknown:
        raise UserError("--keep-float", unknown[0], "no node of the graph has this name (`tinynas quant "
                        "sensitivity` lists them)")
    calibration = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                   "percentile": CalibrationMethod.Percentile}[method]
    with tempfile.TemporaryDirectory() as work, _quiet_quantizer():
        quantized = Path(work) / "int8.onnx"
        quantize_static(str(float_path), str(quantized), _Reader(model.graph.input[0].name, inputs),
                        quant_format=QuantFormat.QDQ, weight_type=QuantType.QInt8, per_channel=True,
                        activation_type=QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8,
                        calibrate_method=calibration, nodes_to_exclude=list(keep_float),
                        op_types_to_quantize=QUANTIZED_OPS,
                        extra_options={"ActivationSymmetric": activations == "int8", "WeightSymmetric": True,
                                       "TensorQuantOverrides": {
                                           name: [{"rmin": np.array(low, dtype=np.float32),
                                                   "rmax": np.array(high, dtype=np.float32)}]
                                           for name, (low, high) in (range_overrides or {}).items()}},
                        calibration_cache_path=str(ranges_cache) if ranges_cache else None,
                        calibration_providers=["CPUExecutionProvider"])
        result = onnx.load(str(quantized))
    del result.metadata_props[:]
    for entry in model.metadata_props:  # every value JSON text, as the float export's (deploy.metadata)
        if entry.key != "precision":
            result.metadata_props.add(key=entry.key, value=entry.value)
    result.metadata_props.add(key="precision", value=json.dumps({
        "weights": "int8 per output channel, symmetric", "activations": f"{activations}"
        + (" symmetric" if activations == "int8" else " with zero points"),
        "calibration": f"ranges of {len(range_overrides)} tensors from quantization-aware training" if range_overrides
        else method,
        "float_nodes": list(keep_float)}))
    atomic_write_bytes(out, result.SerializeToString())
    count = sum(node.op_type == "QuantizeLinear" for node in result.graph.node)
    return QuantizeResult(Path(out), method, len(inputs), count, tuple(keep_float))


@dataclass(frozen=True)
class QuantizeCheck:
    """How far the int8 model's outputs are from the float model's, on the calibration images
    (the exported ``scores`` and ``boxes``; in the outputs' own units: probability, pixels)."""

    max_abs: dict[str, float]
    mean_abs: dict[str, float]
    images: int
    ap: dict[str, float] | None = None  # with val data: COCO AP of "float32" and "int8" on it


def compare_float_and_int8(float_path: str | os.PathLike, int8_path: str | os.PathLike,
                           inputs: Sequence[np.ndarray]) -> QuantizeCheck:
    import onnxruntime as ort

    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (float_path, int8_path)]
    names = [o.name for o in sessions[0].get_outputs()]
    worst = {n: 0.0 for n in names}
    sums = {n: 0.0 for n in names}
    counts = {n: 0 for n in names}
    for x in inputs:
        outputs = [s.run(None, {s.get_inputs()[0].name: x}) for s in sessions]
        for name, ref, got in zip(names, *outputs):
            if ref.shape != got.shape:  # detections with NMS inside: kept counts may differ
                continue
            diff = np.abs(ref.astype(np.float64) - got.astype(np.float64))
            worst[name] = max(worst[name], float(diff.max()) if diff.size else 0.0)
            sums[name] += float(diff.sum())
            counts[name] += diff.size
    mean = {n: sums[n] / counts[n] if counts[n] else float("nan") for n in names}
    return QuantizeCheck(worst, mean, len(inputs))
