"""Box decoding: a discrete distribution over 0..reg_max per side (DFL) -> distances -> boxes.

A head built with ``reg_max == 0`` (YOLOv6-N/S, YOLOX) has no bins: its box output already is
the four side distances in strides (``detect/heads/outputs.py``).
"""

from __future__ import annotations

import torch


def dfl_integral(reg_logits: torch.Tensor, reg_max: int) -> torch.Tensor:
    """``[..., 4 * (reg_max + 1)]`` logits -> ``[..., 4]`` expected distances in stride units.

    With ``reg_max == 0`` the input is ``[..., 4]`` distances and comes back unchanged.
    """
    if reg_max == 0:
        return reg_logits
    shape = reg_logits.shape[:-1]
    probs = torch.softmax(reg_logits.reshape(*shape, 4, reg_max + 1), dim=-1)
    bins = torch.arange(reg_max + 1, dtype=probs.dtype, device=probs.device)
    return (probs * bins).sum(-1)


def distance_to_box(points: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
    """Points ``[..., 2]`` and (left, top, right, bottom) ``[..., 4]`` -> xyxy boxes."""
    return torch.cat([points - distances[..., :2], points + distances[..., 2:]], dim=-1)


def box_to_distance(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Inverse of ``distance_to_box`` (the targets a DFL loss learns)."""
    return torch.cat([points - boxes[..., :2], boxes[..., 2:] - points], dim=-1)


def decode_boxes(reg_logits: torch.Tensor, points: torch.Tensor, strides: torch.Tensor,
                 reg_max: int) -> torch.Tensor:
    """Head box output ``[N, A, 4*(reg_max+1)]`` (DFL logits, or distances when ``reg_max`` is 0)
    -> boxes ``[N, A, 4]`` in input pixels."""
    distances = dfl_integral(reg_logits, reg_max) * strides[:, None]
    return distance_to_box(points, distances)
