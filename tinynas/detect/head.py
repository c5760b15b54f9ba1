"""ZeroHead (DAMO-YOLO): per level one 3x3 class conv and one 3x3 box conv, nothing stacked.

Class outputs are logits (sigmoid gives GFL-style joint quality scores); box outputs are
``4 x (reg_max + 1)`` distribution logits scaled by a learnable per-level scalar.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


class Scale(nn.Module):
    """A learnable scalar multiplier."""

    def __init__(self, value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class ZeroHead(nn.Module):
    def __init__(self, in_channels: Sequence[int], num_classes: int = 80, reg_max: int = 16,
                 strides: Sequence[int] = (8, 16, 32), prior_prob: float = 0.01):
        super().__init__()
        if len(in_channels) != len(strides):
            raise ValueError(f"{len(in_channels)} input levels but {len(strides)} strides")
        self.num_classes, self.reg_max, self.strides = num_classes, reg_max, tuple(strides)
        self.cls_convs = nn.ModuleList(nn.Conv2d(c, num_classes, 3, padding=1) for c in in_channels)
        self.reg_convs = nn.ModuleList(nn.Conv2d(c, 4 * (reg_max + 1), 3, padding=1) for c in in_channels)
        self.scales = nn.ModuleList(Scale(1.0) for _ in in_channels)
        self._init_weights(prior_prob)

    @torch.no_grad()
    def _init_weights(self, prior_prob: float) -> None:
        # Small weights and a background-favouring class bias keep early focal losses stable.
        if self.cls_convs[0].weight.is_meta:
            # A meta-device build (a recipe's check) holds no values; and torch's meta normal_
            # imports its compiler, seconds of every command's start.
            return
        cls_bias = -math.log((1 - prior_prob) / prior_prob)
        for conv in self.cls_convs:
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.constant_(conv.bias, cls_bias)
        for conv in self.reg_convs:
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits ``[N, A, C]`` and box logits ``[N, A, 4*(reg_max+1)]``, levels concatenated."""
        cls_out, reg_out = [], []
        for x, cls_conv, reg_conv, scale in zip(features, self.cls_convs, self.reg_convs, self.scales):
            cls_out.append(cls_conv(x).flatten(2).transpose(1, 2))
            reg_out.append(scale(reg_conv(x)).flatten(2).transpose(1, 2))
        return torch.cat(cls_out, 1), torch.cat(reg_out, 1)

    @torch.no_grad()
    def fuse(self) -> "ZeroHead":
        """Fold each level's scale into its box conv (idempotent: the scale becomes 1)."""
        for conv, scale in zip(self.reg_convs, self.scales):
            s = scale.scale.detach().clone()
            conv.weight.mul_(s)
            conv.bias.mul_(s)
            scale.scale.fill_(1.0)
        return self
