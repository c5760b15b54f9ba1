"""CSP-SPPF (YOLOv6 v3.0's SimCSPSPPF with ReLU, CSPSPPF with SiLU).

One 5x5 max-pool applied three times in a row sees the same windows as SPP's parallel
5/9/13 pools at a third of the cost; the CSP form runs it on half the channels and keeps a
1x1 shortcut half beside it.
"""

from __future__ import annotations

import torch
from torch import nn

from .conv_bn_act import ConvBNAct


class CSPSPPF(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel: int = 5, expansion: float = 0.5,
                 act: str | None = "relu"):
        super().__init__()
        hidden = int(out_channels * expansion)
        self.enter = nn.Sequential(ConvBNAct(in_channels, hidden, 1, act=act), ConvBNAct(hidden, hidden, 3, act=act),
                                   ConvBNAct(hidden, hidden, 1, act=act))
        self.short = ConvBNAct(in_channels, hidden, 1, act=act)
        self.pool = nn.MaxPool2d(kernel, 1, kernel // 2)
        self.leave = nn.Sequential(ConvBNAct(4 * hidden, hidden, 1, act=act), ConvBNAct(hidden, hidden, 3, act=act))
        self.merge = ConvBNAct(2 * hidden, out_channels, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y0 = self.enter(x)
        y1 = self.pool(y0)
        y2 = self.pool(y1)
        pooled = self.leave(torch.cat((y0, y1, y2, self.pool(y2)), dim=1))
        return self.merge(torch.cat((self.short(x), pooled), dim=1))
