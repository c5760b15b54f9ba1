"""Convolutions built through one factory, so that a strided 1x1 conv is computed as a stride-1
conv of the subsampled input.

The two are the same function (a 1x1 kernel with stride s and no padding reads exactly every
s-th pixel) with the same parameters, so checkpoints, fusing and export are unchanged. The
subsampled form exists because torch 2.13's CPU build corrupts the heap computing the
channels-last weight gradient of a strided 1x1 conv with few input channels (3-15 at 40x40
and beyond: a RepConv's point branch behind a Focus stem); the stride-1 form has no such fault,
and training steps run channels-last, ~25% cheaper on the CPU than NCHW.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SubsampledPointConv(nn.Conv2d):
    """A 1x1 ``nn.Conv2d`` with stride > 1, evaluated on every stride-th pixel at stride 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        step_h, step_w = self.stride
        return F.conv2d(x[:, :, ::step_h, ::step_w], self.weight, self.bias, 1, 0, self.dilation, self.groups)


def conv2d(in_channels: int, out_channels: int, kernel: int, stride: int = 1, padding: int = 0,
           groups: int = 1, bias: bool = True) -> nn.Conv2d:
    """``nn.Conv2d(...)``, or its :class:`SubsampledPointConv` form for a strided 1x1 kernel."""
    kind = SubsampledPointConv if kernel == 1 and stride > 1 and padding == 0 else nn.Conv2d
    return kind(in_channels, out_channels, kernel, stride, padding, groups=groups, bias=bias)
