"""YOLOX's decoupled head: per level a 1x1 stem to ``width`` channels, then a class branch and a
box branch of two 3x3 conv-BN-acts each; 1x1 predictors give class logits from the first,
box and objectness from the second.

With ``reg_max == 0`` boxes are YOLOX's (dx, dy, log w, log h); ``forward`` maps them and the
objectness onto the contract (``outputs.py``).
"""

from __future__ import annotations

import math

from typing import Sequence

import torch
from torch import nn

from ...nn.conv_bn_act import ConvBNAct
from .base import DenseHead, prior_bias
from .outputs import YOLOX


def conv_branch(width: int, convs: int, act: str) -> nn.Sequential:
    return nn.Sequential(*(ConvBNAct(width, width, 3, act=act) for _ in range(convs)))


class DecoupledHead(DenseHead):
    direct_coding = YOLOX
    has_objectness = True

    def __init__(self, in_channels: Sequence[int], num_classes: int = 80, reg_max: int = 16,
                 strides: Sequence[int] = (8, 16, 32), prior_prob: float = 0.01, act: str = "silu",
                 width: int | None = None):
        super().__init__(in_channels, num_classes, reg_max, strides)
        # YOLOX's head width is 256 x its width multiple: the finest level's width.
        self.width = width or self.in_channels[0]
        w = self.width
        self.stems = nn.ModuleList(ConvBNAct(c, w, 1, act=act) for c in self.in_channels)
        self.cls_convs = nn.ModuleList(conv_branch(w, 2, act) for _ in self.in_channels)
        self.reg_convs = nn.ModuleList(conv_branch(w, 2, act) for _ in self.in_channels)
        self.cls_preds = nn.ModuleList(nn.Conv2d(w, num_classes, 1) for _ in self.in_channels)
        self.reg_preds = nn.ModuleList(nn.Conv2d(w, self.box_channels, 1) for _ in self.in_channels)
        self.obj_preds = nn.ModuleList(nn.Conv2d(w, 1, 1) for _ in self.in_channels)
        # The score trained here is sigmoid(cls) x sigmoid(obj) as one joint logit, and the box
        # loss is weighted by it: each factor starts at sqrt(prior_prob) so that the joint score,
        # not each factor, starts at prior_prob (YOLOX starts both at prior_prob, i.e. the score
        # at its square, which starves the score-weighted box loss of a short run).
        with torch.no_grad():
            for conv in (*self.cls_preds, *self.obj_preds):
                conv.bias.fill_(prior_bias(math.sqrt(prior_prob)))

    def level(self, index: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.stems[index](x)
        reg_feat = self.reg_convs[index](x)
        return (self.cls_preds[index](self.cls_convs[index](x)), self.reg_preds[index](reg_feat),
                self.obj_preds[index](reg_feat))
