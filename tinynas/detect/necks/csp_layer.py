"""YOLOX's CSPLayer: 1x1 main and shortcut halves, ``n`` Darknet bottlenecks on the main half."""

from __future__ import annotations

import torch
from torch import nn

from ...nn.conv_bn_act import ConvBNAct


class DarkBottleneck(nn.Module):
    """1x1 then 3x3 conv-BN-act; the input is added back when asked and the width is kept."""

    def __init__(self, in_channels: int, out_channels: int, shortcut: bool, act: str, expansion: float = 1.0):
        super().__init__()
        hidden = int(out_channels * expansion)
        self.reduce = ConvBNAct(in_channels, hidden, 1, act=act)
        self.conv = ConvBNAct(hidden, out_channels, 3, act=act)
        self.add = shortcut and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(self.reduce(x))
        return y + x if self.add else y


class CSPLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, n: int, shortcut: bool, act: str,
                 expansion: float = 0.5):
        super().__init__()
        hidden = int(out_channels * expansion)
        self.main = ConvBNAct(in_channels, hidden, 1, act=act)
        self.short = ConvBNAct(in_channels, hidden, 1, act=act)
        self.blocks = nn.Sequential(*(DarkBottleneck(hidden, hidden, shortcut, act) for _ in range(n)))
        self.merge = ConvBNAct(2 * hidden, out_channels, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.merge(torch.cat((self.blocks(self.main(x)), self.short(x)), dim=1))
