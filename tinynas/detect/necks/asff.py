"""YOLOX-PAI's ASFF necks: a PAFPN, then adaptive spatial feature fusion at each of its levels.

At every output level the three PAFPN maps are brought to that level's size and width, a
per-pixel softmax over three weights (from tiny 1x1 convs) mixes them, and a k x k conv
follows. ``asff`` resizes with convs (3x3 stride-2 to go down, 1x1 and nearest upsampling
to go up, a 3x3 max-pool first for the two-step way down); ``asff_sim`` resizes with no
convs at all: space-to-depth to go down, nearest upsampling to go up, and the mean of
channel pairs to halve the width. That only lines up when each level is twice as wide
as the one below it, so ``asff_sim`` requires out_channels (c, 2c, 4c).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...nn.conv_bn_act import ConvBNAct
from ...nn.focus import space_to_depth
from .pafpn import PAFPN


def _upsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    return F.interpolate(x, scale_factor=float(factor), mode="nearest")


def _halve_channels(x: torch.Tensor) -> torch.Tensor:
    """Mean of channel pairs (0, 1), (2, 3), ...: half the width, nothing learned."""
    return (x[:, ::2] + x[:, 1::2]) / 2


class ConvResize(nn.Module):
    """Brings a map from level ``source`` to level ``target`` (0 is /8) with convs."""

    def __init__(self, source: int, target: int, in_channels: int, out_channels: int, act: str):
        super().__init__()
        self.steps = target - source
        if self.steps > 0:
            self.conv = ConvBNAct(in_channels, out_channels, 3, 2, act=act)
        elif self.steps < 0:
            self.conv = ConvBNAct(in_channels, out_channels, 1, act=act)
        else:
            self.conv = None if in_channels == out_channels else ConvBNAct(in_channels, out_channels, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.steps == 2:
            x = F.max_pool2d(x, 3, stride=2, padding=1)
        if self.conv is not None:
            x = self.conv(x)
        return _upsample(x, 2 ** -self.steps) if self.steps < 0 else x


class FreeResize(nn.Module):
    """The same move with no weights (widths double per level)."""

    def __init__(self, source: int, target: int):
        super().__init__()
        self.steps = target - source

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.steps == 2:
            return F.max_pool2d(space_to_depth(x), 3, stride=2, padding=1)
        if self.steps == 1:
            return _halve_channels(space_to_depth(x))
        if self.steps == -1:
            return _halve_channels(_upsample(x, 2))
        if self.steps == -2:
            return _halve_channels(_halve_channels(_upsample(x, 4)))
        return x


class AdaptiveFusion(nn.Module):
    """ASFF at output level ``target`` over three maps of ``widths`` (finest first)."""

    def __init__(self, target: int, widths: Sequence[int], simple: bool, act: str, weight_channels: int = 2,
                 expand_kernel: int = 3):
        super().__init__()
        width = widths[target]
        self.resize = nn.ModuleList(
            FreeResize(source, target) if simple else ConvResize(source, target, widths[source], width, act)
            for source in range(3))
        self.weight_convs = nn.ModuleList(ConvBNAct(width, weight_channels, 1, act=act) for _ in range(3))
        self.weight_merge = ConvBNAct(3 * weight_channels, 3, 1, act=act)
        self.expand = ConvBNAct(width, width, expand_kernel, act=act)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        maps = [resize(x) for resize, x in zip(self.resize, features)]
        logits = self.weight_merge(torch.cat([conv(m) for conv, m in zip(self.weight_convs, maps)], 1))
        weights = torch.softmax(logits, dim=1)
        fused = maps[0] * weights[:, 0:1] + maps[1] * weights[:, 1:2] + maps[2] * weights[:, 2:3]
        return self.expand(fused)


class ASFFNeck(PAFPN):
    """``PAFPN`` followed by one ``AdaptiveFusion`` per output level."""

    simple = False

    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int], depth: float = 1.0,
                 act: str = "silu", weight_channels: int = 2, expand_kernel: int = 3):
        o0, o1, o2 = out_channels
        if self.simple and (o1 != 2 * o0 or o2 != 2 * o1):
            raise ValueError(f"asff_sim resizes without convs, so each level must be twice as wide as the "
                             f"one below: out_channels (c, 2c, 4c), got {tuple(out_channels)}")
        super().__init__(in_channels, out_channels, depth, act)
        self.fusions = nn.ModuleList(AdaptiveFusion(level, tuple(out_channels), self.simple, act, weight_channels,
                                                    expand_kernel) for level in range(3))

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        levels = super().forward(features)
        return tuple(fusion(levels) for fusion in self.fusions)


class SimpleASFFNeck(ASFFNeck):
    simple = True
