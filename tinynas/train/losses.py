"""GFL-style detection losses with DAMO-YOLO's weights.

* Quality Focal Loss on every anchor: the target of a positive's class is the IoU of its
  predicted box with its ground truth, every other target is 0; the BCE is scaled by
  ``|target - p| ** beta``; normalised by the number of positives.
* GIoU and Distribution Focal Loss on positives, each positive weighted by its detached max
  class probability (so confident anchors steer the boxes), normalised by those weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..detect.decode import box_to_distance, dfl_integral, distance_to_box
from .assigner import AlignOTAAssigner


def quality_focal_loss(logits: torch.Tensor, targets: torch.Tensor, beta: float = 2.0) -> torch.Tensor:
    """Element-wise QFL from logits ``[..., C]`` and soft targets of the same shape."""
    prob = logits.sigmoid()
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return bce * (targets - prob).abs().pow(beta)


def giou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Generalised IoU of matched xyxy boxes ``[N, 4]`` and ``[N, 4]`` -> ``[N]``."""
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    union = area_a + area_b - inter + eps
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).clamp(min=0).prod(-1) + eps
    return inter / union - (hull - union) / hull


def distribution_focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """DFL: cross-entropy on the two bins around a continuous target, ``[N, R+1]``, ``[N]`` -> ``[N]``."""
    left = target.floor().long()
    right = left + 1
    w_left = right.float() - target
    w_right = target - left.float()
    return (F.cross_entropy(logits, left, reduction="none") * w_left
            + F.cross_entropy(logits, right, reduction="none") * w_right)


@dataclass
class LossWeights:
    qfl: float = 1.0
    giou: float = 2.0
    dfl: float = 0.25
    qfl_beta: float = 2.0


class DetectionLoss:
    """Assign targets with AlignOTA and compute QFL + GIoU + DFL for a batch."""

    def __init__(self, num_classes: int, reg_max: int = 16, weights: LossWeights | None = None,
                 assigner: AlignOTAAssigner | None = None):
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.weights = weights or LossWeights()
        self.assigner = assigner or AlignOTAAssigner()

    def __call__(self, cls_logits: torch.Tensor, reg_logits: torch.Tensor, points: torch.Tensor,
                 strides: torch.Tensor, targets: list[dict]) -> dict[str, torch.Tensor]:
        """``targets[i]`` holds ``boxes`` [G, 4] xyxy pixels and ``labels`` [G] of image i."""
        batch, num_anchors, _ = cls_logits.shape
        distances = dfl_integral(reg_logits, self.reg_max) * strides[None, :, None]
        pred_boxes = distance_to_box(points[None], distances)  # [B, A, 4]

        cls_targets = torch.zeros_like(cls_logits)
        pos_batch, pos_anchor, pos_gt_boxes = [], [], []
        with torch.no_grad():
            probs = cls_logits.detach().sigmoid()
            for i, target in enumerate(targets):
                gt_boxes = target["boxes"].to(pred_boxes)
                gt_labels = target["labels"].to(cls_logits.device)
                result = self.assigner.assign(probs[i], pred_boxes[i].detach(), points, strides,
                                              gt_boxes, gt_labels)
                pos = result.positive.nonzero(as_tuple=True)[0]
                if pos.numel() == 0:
                    continue
                matched = result.gt_index[pos]
                cls_targets[i, pos, gt_labels[matched]] = result.ious[pos].to(cls_targets.dtype)
                pos_batch.append(torch.full_like(pos, i))
                pos_anchor.append(pos)
                pos_gt_boxes.append(gt_boxes[matched])

        num_pos = sum(p.numel() for p in pos_anchor)
        qfl = quality_focal_loss(cls_logits, cls_targets, self.weights.qfl_beta).sum() / max(num_pos, 1)
        if num_pos == 0:
            zero = reg_logits.sum() * 0.0
            giou_loss, dfl_loss = zero, zero
        else:
            b, a = torch.cat(pos_batch), torch.cat(pos_anchor)
            gt = torch.cat(pos_gt_boxes)
            weight = probs[b, a].max(dim=1).values
            weight_sum = weight.sum().clamp(min=1.0)
            giou_loss = ((1.0 - giou(pred_boxes[b, a], gt)) * weight).sum() / weight_sum
            target_dist = (box_to_distance(points[a], gt) / strides[a, None]).clamp(0, self.reg_max - 0.01)
            logits = reg_logits[b, a].reshape(-1, self.reg_max + 1)
            dfl = distribution_focal_loss(logits, target_dist.reshape(-1))
            dfl_loss = (dfl * weight.repeat_interleave(4)).sum() / (4.0 * weight_sum)
        w = self.weights
        total = w.qfl * qfl + w.giou * giou_loss + w.dfl * dfl_loss
        return {"loss": total, "qfl": qfl.detach(), "giou": giou_loss.detach(), "dfl": dfl_loss.detach(),
                "num_pos": torch.tensor(float(num_pos))}
