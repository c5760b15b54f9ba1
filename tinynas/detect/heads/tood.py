"""YOLOX-PAI's TOOD head: YOLOX's decoupled head with a task-aligned stem.

Per level a 1x1 stem to ``width`` channels; then ``stacked_convs`` 3x3 conv-norm-ReLU layers,
shared by all levels, whose outputs are all kept. Each task takes its own mix of them (task
decomposition): a layer attention (global average pool, two 1x1 convs, sigmoid) weighs the
stacked layers per image, and a 1x1 conv-norm-ReLU reduces the weighted stack to ``width``.
The two task branches, predictors and objectness then follow YOLOX.

Norms are GroupNorm as published (32 groups where the width allows, else the largest
common divisor); GroupNorm does not fold into a conv, so those layers keep it after
``fuse()``. ``norm="bn"`` uses BatchNorm instead, which folds.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ...nn.activation import get_activation
from ...nn.conv_bn_act import ConvBNAct
from .decoupled import DecoupledHead

# The stacked layers and the task reductions use mmcv ConvModule's default activation.
TOOD_ACT = "relu"
GROUPS = 32
LAYER_ATTENTION_REDUCTION = 32


def conv_norm_act(in_channels: int, out_channels: int, kernel: int, norm: str) -> nn.Module:
    if norm == "bn":
        return ConvBNAct(in_channels, out_channels, kernel, act=TOOD_ACT)
    if norm != "gn":
        raise ValueError(f"norm must be 'gn' or 'bn', got {norm!r}")
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel, 1, kernel // 2, bias=False),
                         nn.GroupNorm(math.gcd(GROUPS, out_channels), out_channels),
                         get_activation(TOOD_ACT))


class TaskDecomposition(nn.Module):
    def __init__(self, width: int, layers: int, norm: str):
        super().__init__()
        self.layers = layers
        stacked = width * layers
        hidden = max(stacked // (layers * LAYER_ATTENTION_REDUCTION), 1)
        self.attention = nn.Sequential(nn.Conv2d(stacked, hidden, 1), nn.ReLU(inplace=True),
                                       nn.Conv2d(hidden, layers, 1), nn.Sigmoid())
        self.reduce = conv_norm_act(stacked, width, 1, norm)

    def forward(self, stack: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        # Weighting each layer's slice before the 1x1 reduction equals YOLOX-PAI's weighting
        # of the reduction's kernel per image.
        n, c, h, w = stack.shape
        weights = self.attention(pooled).reshape(n, self.layers, 1, 1, 1)
        weighted = (stack.reshape(n, self.layers, c // self.layers, h, w) * weights).reshape(n, c, h, w)
        return self.reduce(weighted)


class TOODHead(DecoupledHead):
    def __init__(self, in_channels: Sequence[int], num_classes: int = 80, reg_max: int = 16,
                 strides: Sequence[int] = (8, 16, 32), prior_prob: float = 0.01, act: str = "silu",
                 width: int | None = None, stacked_convs: int = 3, norm: str = "gn"):
        super().__init__(in_channels, num_classes, reg_max, strides, prior_prob, act, width)
        w = self.width
        self.inter_convs = nn.ModuleList(conv_norm_act(w, w, 3, norm) for _ in range(stacked_convs))
        self.cls_decomps = nn.ModuleList(TaskDecomposition(w, stacked_convs, norm) for _ in self.in_channels)
        self.reg_decomps = nn.ModuleList(TaskDecomposition(w, stacked_convs, norm) for _ in self.in_channels)

    def level(self, index: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.stems[index](x)
        layers = []
        for conv in self.inter_convs:
            x = conv(x)
            layers.append(x)
        stack = torch.cat(layers, 1)
        pooled = stack.mean(dim=(2, 3), keepdim=True)
        cls_x = self.cls_decomps[index](stack, pooled)
        reg_feat = self.reg_convs[index](self.reg_decomps[index](stack, pooled))
        return (self.cls_preds[index](self.cls_convs[index](cls_x)), self.reg_preds[index](reg_feat),
                self.obj_preds[index](reg_feat))
