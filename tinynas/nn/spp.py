"""SPP bottleneck (YOLOv3-SPP form): halve channels, concat max-pools of several sizes, project."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .conv_bn_act import ConvBNAct


class SPPBottleneck(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, pool_sizes: Sequence[int] = (5, 9, 13),
                 act: str | None = "silu"):
        super().__init__()
        hidden = in_channels // 2
        self.reduce = ConvBNAct(in_channels, hidden, 1, act=act)
        self.pools = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in pool_sizes)
        self.project = ConvBNAct(hidden * (len(pool_sizes) + 1), out_channels, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(x)
        return self.project(torch.cat([x] + [pool(x) for pool in self.pools], dim=1))
