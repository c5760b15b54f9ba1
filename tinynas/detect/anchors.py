"""Anchor points: one per feature-map cell, at the cell's top-left corner in input pixels.

DAMO-YOLO places points at ``(x * stride, y * stride)`` with no half-cell offset; keeping
that makes decoded boxes agree with its convention.
"""

from __future__ import annotations

from typing import Sequence

import torch


def anchor_points(sizes: Sequence[tuple[int, int]], strides: Sequence[int], offset: float = 0.0,
                  dtype: torch.dtype = torch.float32,
                  device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Points ``[A, 2]`` (x, y) and their strides ``[A]`` for levels of ``sizes`` (h, w).

    Levels are concatenated in order, each level row-major, matching the head's flattening.
    """
    points, point_strides = [], []
    for (h, w), stride in zip(sizes, strides):
        ys = (torch.arange(h, dtype=dtype, device=device) + offset) * stride
        xs = (torch.arange(w, dtype=dtype, device=device) + offset) * stride
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1))
        point_strides.append(torch.full((h * w,), float(stride), dtype=dtype, device=device))
    return torch.cat(points), torch.cat(point_strides)
