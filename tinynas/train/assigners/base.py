"""What every assigner here shares: one image's inputs, the answer, the empty-image rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..assigner import Assignment


@dataclass
class ScoredAssignment(Assignment):
    """``quality`` [A]: a positive's class target (0 for background).

    SimOTA and AlignOTA train towards the IoU itself; TAL towards its normalised alignment,
    which differs from the IoU, hence a field of its own.
    """

    quality: torch.Tensor


def class_target(assignment: Assignment) -> torch.Tensor:
    """The class target of each anchor, for any assigner (today's AlignOTA returns the IoU only)."""
    if isinstance(assignment, ScoredAssignment):
        return assignment.quality
    return assignment.ious


class Scene(NamedTuple):
    """One image as an assigner sees it; predictions are detached."""

    scores: torch.Tensor  # [A, C] class probabilities
    boxes: torch.Tensor  # [A, 4] decoded predicted boxes, xyxy pixels
    points: torch.Tensor  # [A, 2] anchor points, pixels
    strides: torch.Tensor  # [A]
    gt_boxes: torch.Tensor  # [G, 4] xyxy pixels
    gt_labels: torch.Tensor  # [G] class indices


class ImageAssigner:
    """Subclasses fill ``match``; ``assign`` has the call and the answer of ``AlignOTAAssigner.assign``."""

    @torch.no_grad()
    def assign(self, scores: torch.Tensor, boxes: torch.Tensor, points: torch.Tensor,
               strides: torch.Tensor, gt_boxes: torch.Tensor, gt_labels: torch.Tensor) -> ScoredAssignment:
        num_anchors = scores.shape[0]
        zeros = torch.zeros(num_anchors, dtype=boxes.dtype, device=boxes.device)
        result = ScoredAssignment(torch.full((num_anchors,), -1, dtype=torch.long, device=boxes.device),
                                  zeros, zeros.clone())
        if gt_boxes.numel() and num_anchors:  # an image without boxes is all background
            self.match(Scene(scores, boxes, points, strides, gt_boxes, gt_labels.long()), result)
        return result

    def match(self, scene: Scene, result: ScoredAssignment) -> None:
        """Mark the positives of ``scene`` in ``result`` (which arrives all background)."""
        raise NotImplementedError
