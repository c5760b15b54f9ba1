"""ONNX export of a fused detector, optionally with NMS inside the graph.

``onnx`` and ``onnxscript`` (and ``onnxruntime`` to check the result) are the optional
``export`` extra. The graph is written by torch's ``torch.export``-based exporter (see
``onnx_trace``); NMS is a custom torch operator that the exporter writes as ONNX's own
``NonMaxSuppression``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_write_bytes
from ..checkpoint import default_class_names
from ..detect.detector import Detector
from ..detect.model_recipe import check_input_size
from ..errors import UserError
from ..detect.footprint import check_detector_fits
from ..runfolder import check_new_file
from .metadata import build_metadata
from .onnx_trace import INSTALL_HINT, OPSET, module_to_onnx, require_exporter
from ..nn.fake_quant import set_fake_quant
from ..nn.reparam import reparameterize

# torch.export cannot trace per-class NMS written in Python: the kept count depends on the
# data, and the first float() of a threshold stops it (GuardOnDataDependentSymNode). As an
# opaque operator with a shape-only "fake" rule it is traced as one node of unknown length,
# which ``_onnx_translations`` writes as NonMaxSuppression; eager calls run the Python body.
@torch.library.custom_op("tinynas::nms_selection", mutates_args=())
def nms_selection(boxes: torch.Tensor, scores: torch.Tensor, max_per_class: torch.Tensor,
                  iou_threshold: torch.Tensor, score_threshold: torch.Tensor) -> torch.Tensor:
    """``[K, 3]`` (batch, class, box) indices that per-class NMS keeps, as ONNX's operator returns them.

    ``boxes [N, A, 4]`` xyxy, ``scores [N, C, A]``; the three limits are one-element tensors.
    """
    from ..detect.nms import nms
    selected = []
    for b in range(scores.shape[0]):
        for c in range(scores.shape[1]):
            idx = torch.nonzero(scores[b, c] > score_threshold, as_tuple=True)[0]
            keep = idx[nms(boxes[b, idx], scores[b, c, idx], float(iou_threshold))][: int(max_per_class)]
            selected.extend((b, c, i) for i in keep.tolist())
    return torch.tensor(selected, dtype=torch.long).reshape(-1, 3)


@nms_selection.register_fake
def _nms_selection_shape(boxes, scores, max_per_class, iou_threshold, score_threshold):
    kept = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((kept, 3), dtype=torch.long)


def _onnx_translations() -> dict:
    import onnxscript

    ops = getattr(onnxscript, f"opset{OPSET}")

    def non_max_suppression(boxes, scores, max_per_class, iou_threshold, score_threshold):
        return ops.NonMaxSuppression(boxes, scores, max_per_class, iou_threshold, score_threshold,
                                     center_point_box=0)

    return {torch.ops.tinynas.nms_selection.default: non_max_suppression}


class DetectorWithNMS(nn.Module):
    """Images -> detections ``[K, 7]``: (batch index, x1, y1, x2, y2, score, class)."""

    def __init__(self, detector: nn.Module, conf_threshold: float = 0.05, iou_threshold: float = 0.7,
                 max_per_class: int = 100):
        super().__init__()
        self.detector = detector
        self.register_buffer("max_per_class", torch.tensor([max_per_class], dtype=torch.long), persistent=False)
        self.register_buffer("iou_threshold", torch.tensor([iou_threshold], dtype=torch.float32), persistent=False)
        self.register_buffer("conf_threshold", torch.tensor([conf_threshold], dtype=torch.float32), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        scores, boxes = self.detector(images)
        selected = nms_selection(boxes, scores.transpose(1, 2).contiguous(), self.max_per_class,
                                 self.iou_threshold, self.conf_threshold)
        batch, cls, anchor = selected[:, 0], selected[:, 1], selected[:, 2]
        return torch.cat([batch[:, None].to(boxes.dtype), boxes[batch, anchor],
                          scores[batch, anchor, cls][:, None], cls[:, None].to(boxes.dtype)], dim=1)


def export_onnx(model: Detector, path: str | os.PathLike, size: int = 640, nms: bool = False,
                conf_threshold: float = 0.05, iou_threshold: float = 0.7, max_detections: int = 100,
                batch: int = 1, force: bool = False, class_names: Sequence[str] | None = None,
                trained_size: int | None = None, category_ids: Sequence[int] | None = None) -> None:
    """Fuse a copy of ``model`` and write it as ONNX to ``path`` (atomically).

    Without ``nms`` the graph outputs ``scores [N, A, C]`` and ``boxes [N, A, 4]``; with it,
    one ``detections [K, 7]`` tensor (``max_detections`` is then a per-class limit, as in
    ONNX's operator). The file's ``metadata_props`` name the classes (``class_names``, default
    ``class0``...; COCO's for 80 classes) and their dataset ids (``category_ids``), the sizes (``trained_size``: the checkpoint's), the
    pre-processing and the outputs (``deploy.metadata``). An existing ``path`` is replaced
    only with ``force``.
    """
    check_input_size(model.recipe, size)
    check_new_file(path, "--out", force)
    require_exporter("export", "format")
    # Tracing runs one forward pass of the fused copy, which sits next to the loaded model.
    check_detector_fits(model.recipe, size, batch, fused=True, source="--size", field="",
                        hint="choose a smaller --size")
    # A quantization-aware model exports its float convs; `export --int8` quantizes them with its ranges.
    fused = set_fake_quant(reparameterize(model, inplace=False), False)
    module: nn.Module = DetectorWithNMS(fused, conf_threshold, iou_threshold, max_detections) if nms else fused
    module.eval()
    dummy = torch.zeros(batch, 3, size, size)
    outputs = ["detections"] if nms else ["scores", "boxes"]
    names = list(class_names) if class_names is not None else default_class_names(model.num_classes)
    if len(names) != model.num_classes:
        raise ValueError(f"{len(names)} class names for a {model.num_classes}-class model")
    metadata = build_metadata(names, size, model.recipe.head.strides, batch, nms, conf_threshold, iou_threshold,
                              max_detections, trained_size, category_ids)
    graph = module_to_onnx(module, (dummy,), ["images"], outputs, _onnx_translations() if nms else None, metadata)
    atomic_write_bytes(path, graph)


def run_onnx(path: str | os.PathLike, images: torch.Tensor) -> list[np.ndarray]:
    """Run an exported model with onnxruntime on CPU."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError(str(path), "", f"running ONNX needs onnxruntime; {INSTALL_HINT}") from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images.detach().cpu().numpy().astype(np.float32)})


def _sorted_rows(detections: np.ndarray) -> np.ndarray:
    # Order by batch, class, then box corners: NMS implementations agree on the kept set,
    # not on the order of equal scores.
    order = np.lexsort((detections[:, 4], detections[:, 3], detections[:, 2], detections[:, 1],
                        detections[:, 6], detections[:, 0]))
    return detections[order]


@torch.no_grad()
def compare_with_torch(path: str | os.PathLike, model: Detector, size: int = 640, nms: bool = False,
                       conf_threshold: float = 0.05, iou_threshold: float = 0.7, max_detections: int = 100,
                       images: torch.Tensor | None = None, seed: int = 0) -> float:
    """Largest |onnxruntime - torch| relative to the largest torch output, on ``images``
    (default: one random image in [0, 1], the range of a prepared image). With ``nms`` the
    detections are compared as sorted rows, and a different number of detections counts as an
    infinite difference."""
    if images is None:
        check_input_size(model.recipe, size)
        images = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    reference: nn.Module = set_fake_quant(reparameterize(model), False)
    if nms:
        reference = DetectorWithNMS(reference, conf_threshold, iou_threshold, max_detections).eval()
    expected = reference(images)
    expected = [expected] if nms else list(expected)
    got = run_onnx(path, images)
    worst = 0.0
    for ref, out in zip(expected, got):
        ref_np = ref.numpy()
        if nms:
            if ref_np.shape != out.shape:
                return float("inf")
            ref_np, out = _sorted_rows(ref_np), _sorted_rows(out)
        scale = max(float(np.abs(ref_np).max()) if ref_np.size else 0.0, 1e-12)
        if ref_np.size:
            worst = max(worst, float(np.abs(ref_np - out).max()) / scale)
    return worst


# float32 convolutions in two runtimes (oneDNN under torch and under onnxruntime) agree to a
# few 1e-6 of the largest output; a wrong weight, or a wrong graph, moves outputs by percents.
CHECK_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportCheck:
    error: float  # largest |onnxruntime - torch| relative to the largest torch output
    tolerance: float
    input: str  # what was fed: an image file, or the seeded random image

    @property
    def passed(self) -> bool:
        return self.error <= self.tolerance


def check_export(path: str | os.PathLike, model: Detector, size: int = 640, nms: bool = False,
                 conf_threshold: float = 0.05, iou_threshold: float = 0.7, max_detections: int = 100,
                 image: str | os.PathLike | None = None, tolerance: float = CHECK_TOLERANCE) -> ExportCheck:
    """Run the export and ``model`` on one input of the range they take: ``image`` letterboxed
    as predict prepares it, else a seeded random image in [0, 1]; compare (``compare_with_torch``)."""
    if image is not None:
        from ..detect.predict import prepared_input
        images, fed = prepared_input(image, size), str(image)
    else:
        images, fed = None, "a random image in [0, 1] (seed 0)"
    error = compare_with_torch(path, model, size, nms, conf_threshold, iou_threshold, max_detections, images=images)
    return ExportCheck(error, tolerance, fed)
