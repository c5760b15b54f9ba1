"""Classification losses beside QFL: varifocal (VarifocalNet, Zhang et al. 2021) and plain BCE.

Each is element-wise on logits ``[..., C]`` and soft targets of the same shape: a positive's
target is the quality its assigner gave it (an IoU, or TAL's normalised alignment), every other
entry is 0. Reduction (and normalisation) is the caller's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .losses import quality_focal_loss
from ..registry import Registry


def varifocal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.75,
                   gamma: float = 2.0) -> torch.Tensor:
    """``-q (q log p + (1 - q) log(1 - p))`` where ``q > 0``, ``-alpha p^gamma log(1 - p)`` where ``q = 0``.

    Positives are scaled by their own target, so high-quality ones dominate; only negatives are
    down-weighted by the focal factor (the asymmetry that distinguishes VFL from QFL).
    """
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    weight = torch.where(targets > 0, targets, alpha * logits.sigmoid().pow(gamma))
    return bce * weight


def bce_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy against the soft targets (YOLOX's class loss, IoU-scaled one-hot)."""
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none")


CLS_LOSSES = Registry("class loss", "train.cls_loss", {"qfl": quality_focal_loss, "vfl": varifocal_loss,
                                                       "bce": bce_loss})


def get_cls_loss(name: str):
    """The element-wise class loss ``(logits, targets) -> [..., C]`` registered as ``name``."""
    return CLS_LOSSES.lookup(name)
