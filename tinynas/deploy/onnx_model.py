"""An exported ONNX detector run by onnxruntime, described by its own ``metadata_props``:
what ``tinynas predict --weights model.onnx`` runs in place of a checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..detect.nms import Detections, multiclass_nms
from ..errors import UserError
from .metadata import parse_metadata
from .onnx_trace import INSTALL_HINT


class OnnxDetector:
    """``detect`` takes prepared images ``[N, 3, size, size]`` in [0, 1] and gives each one's
    detections in input pixels, with predict's post-processing: the graph's scores and boxes go
    through ``multiclass_nms``; a graph with NMS inside has its detections filtered by score and
    cut to ``max_detections`` (its own thresholds, recorded in the metadata, came first)."""

    def __init__(self, path: str | os.PathLike):
        source = str(path)
        if not Path(path).is_file():
            raise UserError(source, "", "weights file not found")
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError(source, "", f"running ONNX needs onnxruntime; {INSTALL_HINT}") from None
        try:
            self.session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types for a bad file
            first = (str(err).strip().splitlines() or [err.__class__.__name__])[0]
            raise UserError(source, "", f"not a readable ONNX model ({first[:200]})") from None
        meta = parse_metadata(self.session.get_modelmeta().custom_metadata_map, source)
        self.source = source
        self.class_names: list[str] = meta["class_names"]
        self.category_ids: list[int] | None = meta["category_ids"]
        self.size: int = meta["input_size"]
        self.trained_size: int | None = meta["trained_size"]
        self.nms: bool = meta["nms"]
        self.postprocess: dict = meta["postprocess"]
        self.input_name = self.session.get_inputs()[0].name
        self.batch = int(meta["input_shape"][0])

    def detect(self, images: torch.Tensor, conf_threshold: float, iou_threshold: float,
               max_detections: int) -> list[Detections]:
        found = []
        for start in range(0, len(images), self.batch):  # the graph's batch is fixed at export
            chunk = images[start:start + self.batch].float().contiguous().numpy()
            count = len(chunk)
            if count < self.batch:  # a last, smaller batch: blank images fill it, their results go
                chunk = np.concatenate([chunk, np.zeros((self.batch - count, *chunk.shape[1:]), np.float32)])
            if self.nms:
                (rows,) = self.session.run(None, {self.input_name: chunk})
                found.extend(_filtered(rows[rows[:, 0] == b], conf_threshold, max_detections) for b in range(count))
            else:
                scores, boxes = self.session.run(None, {self.input_name: chunk})
                found.extend(multiclass_nms(torch.from_numpy(scores[b]), torch.from_numpy(boxes[b]), conf_threshold,
                                            iou_threshold, max_detections) for b in range(count))
        return found


def _filtered(rows: np.ndarray, conf_threshold: float, max_detections: int) -> Detections:
    rows = rows[rows[:, 5] > conf_threshold]
    rows = rows[np.argsort(-rows[:, 5], kind="stable")][:max_detections]
    return Detections(torch.from_numpy(rows[:, 1:5].copy()), torch.from_numpy(rows[:, 5].copy()),
                      torch.from_numpy(rows[:, 6].astype(np.int64)))
