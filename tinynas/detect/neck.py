"""Efficient RepGFPN (DAMO-YOLO's GiraffeNeckV2): a "heavy neck" of CSP fusion nodes.

Inputs are three backbone levels (/8, /16, /32). Node order, as published:
x3 = fuse(x0, down(x1)); x4 = fuse(x1, down(x2), up(x3)); x5 = fuse(x2, up(x4));
x7 = fuse(x4, down(x5)); x6 = fuse(x3, down(x4), down(x7)); outputs (x5, x7, x6).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.conv_bn_act import ConvBNAct
from ..nn.repconv import RepConv


class RepBottleneck(nn.Module):
    """RepConv 3x3 (ch -> ch * hidden_ratio), conv 3x3 back to ch, plus the input."""

    def __init__(self, channels: int, hidden_ratio: float, act: str):
        super().__init__()
        hidden = int(channels * hidden_ratio)
        self.expand = RepConv(channels, hidden, 3, act=act)
        self.project = ConvBNAct(hidden, channels, 3, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(self.expand(x))


class FusionStage(nn.Module):
    """CSP fusion: two 1x1 convs split the input; ``n`` RepBottlenecks run on one half and
    every bottleneck's output is concatenated with the other half before a 1x1 conv."""

    def __init__(self, in_channels: int, out_channels: int, n: int, hidden_ratio: float, act: str):
        super().__init__()
        first = out_channels // 2
        mid = out_channels - first
        self.short = ConvBNAct(in_channels, first, 1, act=act)
        self.main = ConvBNAct(in_channels, mid, 1, act=act)
        self.blocks = nn.ModuleList(RepBottleneck(mid, hidden_ratio, act) for _ in range(n))
        self.merge = ConvBNAct(first + mid * n, out_channels, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [self.short(x)]
        y = self.main(x)
        for block in self.blocks:
            y = block(y)
            parts.append(y)
        return self.merge(torch.cat(parts, dim=1))


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


class GiraffeNeckV2(nn.Module):
    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int], depth: float = 1.0,
                 hidden_ratio: float = 1.0, act: str = "relu"):
        super().__init__()
        if len(in_channels) != 3 or len(out_channels) != 3:
            raise ValueError("GiraffeNeckV2 takes three levels in and gives three out")
        c2, c1, c0 = in_channels
        o0, o1, o2 = out_channels
        self.in_channels, self.out_channels = tuple(in_channels), tuple(out_channels)
        n = round(3 * depth)

        def down(ch: int) -> ConvBNAct:
            return ConvBNAct(ch, ch, 3, 2, act=act)

        def fuse(cin: int, cout: int) -> FusionStage:
            return FusionStage(cin, cout, n, hidden_ratio, act)

        self.down_1to3 = down(c1)
        self.node3 = fuse(c0 + c1, c0)
        self.down_2to4 = down(c2)
        self.node4 = fuse(c1 + c2 + c0, c1)
        self.node5 = fuse(c2 + c1, o0)
        self.down_5to7 = down(o0)
        self.node7 = fuse(c1 + o0, o1)
        self.down_4to6 = down(c1)
        self.down_7to6 = down(o1)
        self.node6 = fuse(c0 + c1 + o1, o2)

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x2, x1, x0 = features
        x3 = self.node3(torch.cat([x0, self.down_1to3(x1)], 1))
        x4 = self.node4(torch.cat([x1, self.down_2to4(x2), _up(x3)], 1))
        x5 = self.node5(torch.cat([x2, _up(x4)], 1))
        x7 = self.node7(torch.cat([x4, self.down_5to7(x5)], 1))
        x6 = self.node6(torch.cat([x3, self.down_4to6(x4), self.down_7to6(x7)], 1))
        return x5, x7, x6
