"""The detection loss assembled from named parts: an assigner, a class loss, a box loss, DFL on or off.

``train.assigner`` (alignota | simota | tal), ``train.cls_loss`` (qfl | vfl | bce),
``train.box_loss`` (giou | ciou | siou) and ``train.dfl`` pick the parts; the defaults are
DAMO-YOLO's, for which the result equals ``losses.DetectionLoss``. What stays fixed across
options is DAMO-YOLO's bookkeeping: the class loss is summed over all anchors and divided by
the number of positives; the box and DFL losses are averaged over positives weighted by their
detached highest class probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..detect.decode import box_to_distance, dfl_integral, distance_to_box
from ..errors import UserError
from .assigners import class_target, create_assigner, get_assigner
from .box_losses import get_box_loss
from .cls_losses import get_cls_loss
from .losses import LossWeights, distribution_focal_loss


@dataclass(frozen=True)
class LossOptions:
    assigner: str = "alignota"
    cls_loss: str = "qfl"
    box_loss: str = "giou"
    dfl: bool = True


def check_loss_options(options: LossOptions, source: str) -> LossOptions:
    """``options`` unchanged, or a ``UserError`` naming ``source`` and the field that holds an unknown name."""
    try:
        get_assigner(options.assigner), get_cls_loss(options.cls_loss), get_box_loss(options.box_loss)
    except UserError as error:
        raise UserError(source, error.field, error.reason) from None
    if not isinstance(options.dfl, bool):
        raise UserError(source, "train.dfl", f"must be true or false, got {options.dfl!r}")
    return options


@dataclass
class _Positives:
    """Positive anchors of a batch: image index, anchor index, matched box ``[P, 4]``."""

    image: torch.Tensor
    anchor: torch.Tensor
    gt_boxes: torch.Tensor


class ComposedDetectionLoss:
    """Same call as ``losses.DetectionLoss``; the loss terms are named after the chosen parts.

    ``weights.qfl`` / ``weights.giou`` / ``weights.dfl`` scale the class, box and DFL terms
    whichever losses fill them (``qfl_beta`` only reaches QFL, at its default).
    """

    def __init__(self, num_classes: int, reg_max: int = 16, options: LossOptions | None = None,
                 weights: LossWeights | None = None):
        self.num_classes, self.reg_max = num_classes, reg_max
        self.options, self.weights = options or LossOptions(), weights or LossWeights()
        self.assigner = create_assigner(self.options.assigner)
        self.cls_loss = get_cls_loss(self.options.cls_loss)
        self.box_loss = get_box_loss(self.options.box_loss)

    def __call__(self, cls_logits: torch.Tensor, reg_logits: torch.Tensor, points: torch.Tensor,
                 strides: torch.Tensor, targets: list[dict]) -> dict[str, torch.Tensor]:
        """``targets[i]`` holds ``boxes`` [G, 4] xyxy pixels and ``labels`` [G] of image i."""
        distances = dfl_integral(reg_logits, self.reg_max) * strides[None, :, None]
        pred_boxes = distance_to_box(points[None], distances)  # [B, A, 4]
        probs = cls_logits.detach().sigmoid()
        cls_targets, pos = self._assign(probs, pred_boxes.detach(), points, strides, targets)
        num_pos = pos.anchor.numel()

        cls_term = self.cls_loss(cls_logits, cls_targets).sum() / max(num_pos, 1)
        # Zero terms that keep reg_logits in the graph, so an all-background batch still backpropagates.
        box_term = dfl_term = reg_logits.sum() * 0.0
        if not self.options.dfl:
            dfl_term = reg_logits.new_zeros(())
        if num_pos:
            weight = probs[pos.image, pos.anchor].amax(1)
            weight_sum = weight.sum().clamp(min=1.0)
            box = self.box_loss(pred_boxes[pos.image, pos.anchor], pos.gt_boxes)
            box_term = (box * weight).sum() / weight_sum
            if self.options.dfl:
                dfl_term = self._dfl(reg_logits, points, strides, pos, weight) / weight_sum
        w = self.weights
        total = w.qfl * cls_term + w.giou * box_term + w.dfl * dfl_term
        return {"loss": total, self.options.cls_loss: cls_term.detach(),
                self.options.box_loss: box_term.detach(), "dfl": dfl_term.detach(),
                "num_pos": torch.tensor(float(num_pos))}

    @torch.no_grad()
    def _assign(self, probs: torch.Tensor, pred_boxes: torch.Tensor, points: torch.Tensor,
                strides: torch.Tensor, targets: list[dict]) -> tuple[torch.Tensor, _Positives]:
        """Class targets ``[B, A, C]`` and the batch's positives."""
        cls_targets = torch.zeros_like(probs)
        images, anchors, boxes = [], [], []
        for i, target in enumerate(targets):
            gt_boxes = target["boxes"].to(pred_boxes)
            gt_labels = target["labels"].to(probs.device).long()
            result = self.assigner.assign(probs[i], pred_boxes[i], points, strides, gt_boxes, gt_labels)
            anchor = result.positive.nonzero(as_tuple=True)[0]
            matched = result.gt_index[anchor]
            cls_targets[i, anchor, gt_labels[matched]] = class_target(result)[anchor].to(cls_targets.dtype)
            images.append(torch.full_like(anchor, i))
            anchors.append(anchor)
            boxes.append(gt_boxes[matched])
        empty = torch.zeros(0, dtype=torch.long, device=probs.device)
        return cls_targets, _Positives(torch.cat(images) if images else empty,
                                       torch.cat(anchors) if anchors else empty,
                                       torch.cat(boxes) if boxes else pred_boxes.new_zeros(0, 4))

    def _dfl(self, reg_logits: torch.Tensor, points: torch.Tensor, strides: torch.Tensor,
             pos: _Positives, weight: torch.Tensor) -> torch.Tensor:
        """Weighted sum over positives of DFL averaged over the four sides."""
        sides = box_to_distance(points[pos.anchor], pos.gt_boxes) / strides[pos.anchor, None]
        sides = sides.clamp(0, self.reg_max - 0.01)
        logits = reg_logits[pos.image, pos.anchor].reshape(-1, self.reg_max + 1)
        per_side = distribution_focal_loss(logits, sides.reshape(-1)).reshape(-1, 4)
        return (per_side.mean(1) * weight).sum()
