"""CSPStackRep (YOLOv6's BepC3): a CSP split whose main half runs pairs of RepVGG units.

Each pair (``BottleRep``) adds its input back scaled by a learnable scalar. The scalar
sits after the pair's last activation, so it stays a separate multiply after ``fuse()``.
"""

from __future__ import annotations

import torch
from torch import nn

from .conv_bn_act import ConvBNAct
from .repvgg import rep_unit


class BottleRep(nn.Module):
    """Two RepVGG units; ``alpha * x`` is added when the width is kept."""

    def __init__(self, in_channels: int, out_channels: int, act: str | None = "relu", reparam: bool = True):
        super().__init__()
        self.first = rep_unit(in_channels, out_channels, 3, 1, act, reparam)
        self.second = rep_unit(out_channels, out_channels, 3, 1, act, reparam)
        self.alpha = nn.Parameter(torch.ones(1)) if in_channels == out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.second(self.first(x))
        return out + self.alpha * x if self.alpha is not None else out


class CSPStackRep(nn.Module):
    """1x1 main and shortcut halves of ``out * expansion`` channels; ``units`` RepVGG units run
    on the main half as ``max(units // 2, 1)`` pairs; both halves are joined by a 1x1 conv."""

    def __init__(self, in_channels: int, out_channels: int, units: int, expansion: float = 0.5,
                 act: str | None = "relu", reparam: bool = True):
        super().__init__()
        hidden = int(out_channels * expansion)
        self.main = ConvBNAct(in_channels, hidden, 1, act=act)
        self.short = ConvBNAct(in_channels, hidden, 1, act=act)
        self.pairs = nn.Sequential(*(BottleRep(hidden, hidden, act, reparam) for _ in range(max(units // 2, 1))))
        self.merge = ConvBNAct(2 * hidden, out_channels, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.merge(torch.cat((self.pairs(self.main(x)), self.short(x)), dim=1))
