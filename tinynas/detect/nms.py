"""Greedy non-maximum suppression and its multi-class form, written out (no torchvision)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# What ``tinynas predict`` keeps by default; a deployed model's metadata names them too, so a
# runtime outside tinynas (deploy/infer.py) post-processes as predict does.
PREDICT_CONF = 0.25
PREDICT_IOU = 0.7
PREDICT_MAX_DETECTIONS = 100
PRE_NMS_TOP_K = 3000


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of xyxy boxes: ``[M, 4] x [K, 4] -> [M, K]``."""
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter / union.clamp(min=1e-9)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, max_keep: int | None = None) -> torch.Tensor:
    """Indices of the kept boxes, highest score first; at most ``max_keep`` of them.

    A box is dropped when it overlaps a *kept* higher-scoring box by more than the threshold.
    Only a kept box's overlaps are ever needed, so they are computed one kept box at a time
    (against the boxes after it) and the pass ends at ``max_keep``: an evaluation at conf 0.001
    keeps 100 of ~2000 candidates, and the full pairwise matrix cost 30x more.
    """
    if boxes.numel() == 0 or max_keep == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = torch.argsort(scores, descending=True, stable=True)
    ranked = boxes[order].detach().cpu()
    ranked = (ranked.float() if ranked.dtype == torch.bfloat16 else ranked).numpy()  # numpy has no bfloat16
    # The same float operations, in the same order, as box_iou: the same overlaps bit for bit.
    widths = np.clip(ranked[:, 2] - ranked[:, 0], 0, None)
    heights = np.clip(ranked[:, 3] - ranked[:, 1], 0, None)
    areas = widths * heights
    tiny = np.asarray(1e-9, dtype=ranked.dtype)
    suppressed = np.zeros(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        if len(keep) == max_keep:
            break
        rest = ranked[i + 1:]
        top_left = np.maximum(ranked[i, :2], rest[:, :2])
        bottom_right = np.minimum(ranked[i, 2:], rest[:, 2:])
        sides = np.clip(bottom_right - top_left, 0, None)
        inter = sides[:, 0] * sides[:, 1]
        union = areas[i] + areas[i + 1:] - inter
        suppressed[i + 1:] |= inter / np.maximum(union, tiny) > iou_threshold
    return order[torch.as_tensor(keep, dtype=torch.long, device=order.device)]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor,
                iou_threshold: float, max_keep: int | None = None) -> torch.Tensor:
    """NMS within each class: boxes of different classes never suppress each other.

    Shifting each class's boxes by its own large offset makes them disjoint, so one pass
    of plain NMS does every class at once.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    span = boxes.max() - boxes.min() + 1
    shifted = boxes - boxes.min() + classes.to(boxes.dtype)[:, None] * span
    return nms(shifted, scores, iou_threshold, max_keep)


@dataclass(frozen=True)
class Detections:
    """One image's detections: boxes ``[K, 4]`` xyxy, scores ``[K]``, class indices ``[K]``."""

    boxes: torch.Tensor
    scores: torch.Tensor
    classes: torch.Tensor

    def __len__(self) -> int:
        return int(self.scores.numel())


def multiclass_nms(scores: torch.Tensor, boxes: torch.Tensor, conf_threshold: float = 0.05,
                   iou_threshold: float = 0.7, max_detections: int = 100,
                   pre_nms_top_k: int = PRE_NMS_TOP_K) -> Detections:
    """One image: ``scores [A, C]``, ``boxes [A, 4]`` -> the kept detections, best first.

    Every (anchor, class) pair above ``conf_threshold`` is a candidate, so one anchor may
    give boxes of several classes, as DAMO-YOLO's post-processing allows.
    """
    anchor_idx, class_idx = torch.nonzero(scores > conf_threshold, as_tuple=True)
    cand_scores = scores[anchor_idx, class_idx]
    if cand_scores.numel() > pre_nms_top_k:
        top = torch.topk(cand_scores, pre_nms_top_k).indices
        anchor_idx, class_idx, cand_scores = anchor_idx[top], class_idx[top], cand_scores[top]
    cand_boxes = boxes[anchor_idx]
    keep = batched_nms(cand_boxes, cand_scores, class_idx, iou_threshold, max_detections)
    return Detections(cand_boxes[keep], cand_scores[keep], class_idx[keep])
