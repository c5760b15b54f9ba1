"""IoU-family box losses on matched xyxy boxes: GIoU, CIoU (Zheng et al. 2020), SIoU (Gevorgyan 2022).

Every loss maps predictions ``[N, 4]`` and their targets ``[N, 4]`` to ``[N]``, zero for a
perfect box, so any of them can stand in for another beside (or without) DFL.
"""

from __future__ import annotations

import math

import torch

from .losses import giou
from ..registry import Registry

_EPS = 1e-7


def giou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - GIoU``."""
    return 1.0 - giou(pred, target)


def _sizes(boxes: torch.Tensor) -> torch.Tensor:
    """(width, height) ``[N, 2]``; a box decoded from distances is never inverted, clamp for safety."""
    return (boxes[:, 2:] - boxes[:, :2]).clamp(min=0)


def _iou_and_hull(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU ``[N]`` and the (width, height) ``[N, 2]`` of the smallest box enclosing both."""
    overlap = (torch.minimum(pred[:, 2:], target[:, 2:]) - torch.maximum(pred[:, :2], target[:, :2]))
    inter = overlap.clamp(min=0).prod(-1)
    union = _sizes(pred).prod(-1) + _sizes(target).prod(-1) - inter
    hull = torch.maximum(pred[:, 2:], target[:, 2:]) - torch.minimum(pred[:, :2], target[:, :2])
    return inter / (union + _EPS), hull


def _centre_offset(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Target centre minus predicted centre, ``[N, 2]``."""
    return ((target[:, :2] + target[:, 2:]) - (pred[:, :2] + pred[:, 2:])) / 2


def ciou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - IoU + rho^2 / c^2 + alpha * v`` with ``v`` the aspect-ratio gap.

    ``rho`` is the centre distance, ``c`` the enclosing box's diagonal,
    ``v = 4 / pi^2 * (atan(w_t / h_t) - atan(w_p / h_p))^2`` and ``alpha = v / (1 - IoU + v)``.
    ``alpha`` is a weight, not a path for the gradient (as in the CIoU paper's code).
    """
    iou, hull = _iou_and_hull(pred, target)
    rho2 = _centre_offset(pred, target).pow(2).sum(-1)
    c2 = hull.pow(2).sum(-1) + _EPS
    wh_p, wh_t = _sizes(pred), _sizes(target)
    aspect_p = torch.atan(wh_p[:, 0] / (wh_p[:, 1] + _EPS))
    aspect_t = torch.atan(wh_t[:, 0] / (wh_t[:, 1] + _EPS))
    v = (4.0 / math.pi ** 2) * (aspect_t - aspect_p).pow(2)
    with torch.no_grad():
        alpha = v / (1.0 - iou + v + _EPS)
    return 1.0 - iou + rho2 / c2 + alpha * v


def siou_loss(pred: torch.Tensor, target: torch.Tensor, theta: float = 4.0) -> torch.Tensor:
    """``1 - IoU + (distance cost + shape cost) / 2``, YOLOv6's SIoU.

    Angle cost ``L = sin(2 a)``, ``a`` the angle between the centre line and the nearer axis
    (the paper's ``1 - 2 sin^2(a - pi/4)`` is the same number). Distance cost
    ``sum over x, y of 1 - exp(-(2 - L) * (d / c)^2)``, ``d`` the centre offset and ``c`` the
    enclosing box's side. Shape cost ``sum over w, h of (1 - exp(-|s_p - s_t| / max(s_p, s_t)))^theta``.
    """
    iou, hull = _iou_and_hull(pred, target)
    offset = _centre_offset(pred, target)
    dx, dy = offset[:, 0], offset[:, 1]
    # sin(2a) = 2 sin(a) cos(a) = 2 |dx| |dy| / (dx^2 + dy^2): no arcsin, no square root, so the
    # gradient stays finite when the centres coincide.
    angle_cost = 2 * dx.abs() * dy.abs() / (dx.pow(2) + dy.pow(2) + _EPS)
    gamma = 2.0 - angle_cost
    rho = (offset / (hull + _EPS)).pow(2)
    distance_cost = (1.0 - torch.exp(-gamma[:, None] * rho)).sum(-1)
    wh_p, wh_t = _sizes(pred), _sizes(target)
    omega = (wh_p - wh_t).abs() / (torch.maximum(wh_p, wh_t) + _EPS)
    shape_cost = (1.0 - torch.exp(-omega)).pow(theta).sum(-1)
    return 1.0 - iou + 0.5 * (distance_cost + shape_cost)


BOX_LOSSES = Registry("box loss", "train.box_loss", {"giou": giou_loss, "ciou": ciou_loss, "siou": siou_loss})


def get_box_loss(name: str):
    """The per-box loss ``(pred [N, 4], target [N, 4]) -> [N]`` registered as ``name``."""
    return BOX_LOSSES.lookup(name)
