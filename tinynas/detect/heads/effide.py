"""YOLOv6's efficient decoupled head: per level, at that level's own width, a 1x1 stem and one
3x3 conv-BN-act for each task, then 1x1 predictors. No objectness.

With ``reg_max == 0`` (YOLOv6-N/S as released) boxes are the four side distances directly;
with ``reg_max > 0`` (YOLOv6-M/L, ``use_dfl``) DFL logits. YOLOv6 measures distances from the
cell centre, tinynas from its top-left corner: left/top differ by half a stride, which only
matters when loading YOLOv6's own weights.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ...nn.conv_bn_act import ConvBNAct
from .base import DenseHead, prior_bias
from .outputs import LTRB


class EffiDeHead(DenseHead):
    direct_coding = LTRB

    def __init__(self, in_channels: Sequence[int], num_classes: int = 80, reg_max: int = 16,
                 strides: Sequence[int] = (8, 16, 32), prior_prob: float = 0.01, act: str = "silu"):
        super().__init__(in_channels, num_classes, reg_max, strides)
        chans = self.in_channels
        self.stems = nn.ModuleList(ConvBNAct(c, c, 1, act=act) for c in chans)
        self.cls_convs = nn.ModuleList(ConvBNAct(c, c, 3, act=act) for c in chans)
        self.reg_convs = nn.ModuleList(ConvBNAct(c, c, 3, act=act) for c in chans)
        self.cls_preds = nn.ModuleList(nn.Conv2d(c, num_classes, 1) for c in chans)
        self.reg_preds = nn.ModuleList(nn.Conv2d(c, self.box_channels, 1) for c in chans)
        with torch.no_grad():
            # YOLOv6 starts every prediction from its bias alone: scores at the prior, each
            # side one stride away.
            for conv in self.cls_preds:
                conv.weight.zero_()
                conv.bias.fill_(prior_bias(prior_prob))
            for conv in self.reg_preds:
                conv.weight.zero_()
                conv.bias.fill_(1.0)

    def level(self, index: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        x = self.stems[index](x)
        return self.cls_preds[index](self.cls_convs[index](x)), self.reg_preds[index](self.reg_convs[index](x)), None
