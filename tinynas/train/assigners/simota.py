"""SimOTA label assignment (YOLOX, Ge et al. 2021), as first published (centre radius 2.5).

For one image: an anchor is a candidate when its point lies inside some box or within
``center_radius`` strides of some box's centre. The cost of matching candidate a to box g is
``BCE(p_a, onehot_g) summed over classes + 3 * -log(IoU_ag)``, plus a large penalty unless
the point is both inside g and near g's centre. Box g takes its ``k_g`` cheapest candidates,
``k_g = max(1, int(sum of its 10 best IoUs))``; an anchor taken by several boxes keeps the
cheapest of those boxes. A positive's class target is its IoU with its box.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...detect.nms import box_iou
from .base import ImageAssigner, Scene, ScoredAssignment

_OUTSIDE_PRIOR = 1e5
_LOG_FLOOR = 1e-8
_PROB_FLOOR = 1e-7


def centre_prior(points: torch.Tensor, strides: torch.Tensor, gt_boxes: torch.Tensor,
                 center_radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``inside`` and ``near`` ``[A, G]``: point a lies strictly inside box g / within the radius of its centre."""
    x, y = points[:, 0:1], points[:, 1:2]
    margins = torch.stack([x - gt_boxes[:, 0], y - gt_boxes[:, 1], gt_boxes[:, 2] - x, gt_boxes[:, 3] - y], -1)
    inside = margins.amin(-1) > 0
    radius = center_radius * strides[:, None]
    near = (((x - (gt_boxes[:, 0] + gt_boxes[:, 2]) / 2).abs() < radius)
            & ((y - (gt_boxes[:, 1] + gt_boxes[:, 3]) / 2).abs() < radius))
    return inside, near


def dynamic_k(ious: torch.Tensor, topk: int) -> torch.Tensor:
    """Per box ``[G]``: ``max(1, int(sum of its topk largest IoUs))`` over the candidates ``[K, G]``."""
    best = ious.topk(min(topk, ious.shape[0]), dim=0).values
    return best.sum(0).int().clamp(min=1)


def match_cheapest(cost: torch.Tensor, ks: torch.Tensor) -> torch.Tensor:
    """Matched box per candidate ``[K]`` (-1 none): each box g takes its ``ks[g]`` cheapest candidates,
    and a candidate taken by several boxes stays with the one it is cheapest for."""
    # Rank of each candidate in each box's order by cost; a stable sort breaks ties by index.
    order = cost.argsort(dim=0, stable=True)
    rank = torch.empty_like(order)
    positions = torch.arange(cost.shape[0], device=cost.device)[:, None].expand_as(order)
    rank.scatter_(0, order, positions)
    taken = rank < ks[None, :]
    # The cheapest of the boxes that took it (YOLOX's code looks at every box, which can only
    # differ when a box that passed the anchor over is cheaper still).
    cheapest = cost.masked_fill(~taken, float("inf")).argmin(1)
    return torch.where(taken.any(1), cheapest, torch.full_like(cheapest, -1))


@dataclass(frozen=True)
class SimOTAAssigner(ImageAssigner):
    center_radius: float = 2.5
    topk: int = 10
    iou_weight: float = 3.0
    cls_weight: float = 1.0

    def match(self, scene: Scene, result: ScoredAssignment) -> None:
        inside, near = centre_prior(scene.points, scene.strides, scene.gt_boxes, self.center_radius)
        candidate = (inside | near).any(1)
        if not candidate.any():
            return
        ious = box_iou(scene.boxes[candidate], scene.gt_boxes)  # [K, G]
        cost = (self.cls_weight * self.class_cost(scene.scores[candidate].float(), scene.gt_labels)
                + self.iou_weight * -torch.log(ious + _LOG_FLOOR)
                + _OUTSIDE_PRIOR * ~(inside & near)[candidate])
        matched = match_cheapest(cost, dynamic_k(ious, self.topk))
        taken = matched >= 0
        anchor = candidate.nonzero(as_tuple=True)[0][taken]
        result.gt_index[anchor] = matched[taken]
        result.ious[anchor] = ious[taken, matched[taken]].to(result.ious.dtype)
        result.quality[anchor] = result.ious[anchor]

    def class_cost(self, probs: torch.Tensor, gt_labels: torch.Tensor) -> torch.Tensor:
        """``[K, G]``: BCE of each candidate's probabilities against box g's one-hot class, summed over classes."""
        p = probs.clamp(_PROB_FLOOR, 1 - _PROB_FLOOR)
        # sum_c BCE(p_c, [c == g]) = -sum_c log(1 - p_c) - log(p_g / (1 - p_g)): [K] + [K, G],
        # never the [K, G, C] tensor of the literal sum.
        all_negative = -torch.log1p(-p).sum(1)
        logit = torch.log(p) - torch.log1p(-p)
        return all_negative[:, None] - logit[:, gt_labels]
