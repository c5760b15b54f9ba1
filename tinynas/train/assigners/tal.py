"""Task-aligned assignment (TOOD, Feng et al. 2021; YOLOv6's settings: top 13, alpha 1, beta 6).

For one image: the alignment of anchor a with box g is ``t = s^alpha * u^beta``, ``s`` the
predicted probability of g's class at a and ``u`` the IoU of a's predicted box with g. Box g
takes the ``topk`` anchors of highest ``t`` among those whose points lie inside it; an anchor
taken by several boxes goes to the one it overlaps most. A positive's class target is
``t * max IoU of g's positives / max t of g's positives``: the best-aligned anchor of each box
learns that box's best IoU, the rest proportionally less.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...detect.nms import box_iou
from .base import ImageAssigner, Scene, ScoredAssignment

_EPS = 1e-9


def points_inside(points: torch.Tensor, gt_boxes: torch.Tensor) -> torch.Tensor:
    """``[G, A]``: point a lies strictly inside box g."""
    x, y = points[None, :, 0], points[None, :, 1]
    margins = torch.stack([x - gt_boxes[:, 0:1], y - gt_boxes[:, 1:2],
                           gt_boxes[:, 2:3] - x, gt_boxes[:, 3:4] - y], -1)
    return margins.amin(-1) > _EPS


def top_aligned(alignment: torch.Tensor, inside: torch.Tensor, topk: int) -> torch.Tensor:
    """``[G, A]`` bool: each box's ``topk`` best-aligned anchors among those inside it."""
    # Anchors outside rank below every anchor inside (alignments are >= 0) and are dropped after.
    ranked = alignment.masked_fill(~inside, -1.0)
    best = ranked.topk(min(topk, alignment.shape[1]), dim=1).indices
    taken = torch.zeros_like(inside).scatter_(1, best, True)
    return taken & inside


def resolve_by_iou(taken: torch.Tensor, ious: torch.Tensor) -> torch.Tensor:
    """Keep one box per anchor: among the boxes that took it, the one with the highest IoU."""
    # Only among those boxes: YOLOv6's code takes the highest IoU over every box, which can hand
    # an anchor to a box whose interior does not contain it.
    best = ious.masked_fill(~taken, -1.0).argmax(0)  # [A]
    only_best = torch.zeros_like(taken).scatter_(0, best[None], True)
    return taken & only_best


@dataclass(frozen=True)
class TaskAlignedAssigner(ImageAssigner):
    """Scene strides are unused: TAL's prior is the box itself, at any scale."""

    topk: int = 13
    alpha: float = 1.0
    beta: float = 6.0

    def match(self, scene: Scene, result: ScoredAssignment) -> None:
        gt_boxes = scene.gt_boxes.float()
        ious = box_iou(gt_boxes, scene.boxes.float())  # [G, A]
        class_scores = scene.scores.float()[:, scene.gt_labels].T  # [G, A]
        alignment = class_scores.pow(self.alpha) * ious.pow(self.beta)
        inside = points_inside(scene.points.float(), gt_boxes)
        positive = resolve_by_iou(top_aligned(alignment, inside, self.topk), ious)  # [G, A]
        matched = positive.any(0)
        kept_alignment = alignment * positive
        kept_ious = ious * positive
        scale = kept_ious.amax(1, keepdim=True) / (kept_alignment.amax(1, keepdim=True) + _EPS)
        result.gt_index[matched] = positive.float().argmax(0)[matched]
        result.ious[matched] = kept_ious.sum(0)[matched].to(result.ious.dtype)
        result.quality[matched] = (kept_alignment * scale).sum(0)[matched].to(result.quality.dtype)
