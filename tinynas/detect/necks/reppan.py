"""YOLOv6's Rep-PAN: the path-aggregation topology with RepBlock nodes, 1x1 laterals,
3x3 stride-2 downsamplers and 2x2 stride-2 transposed convs to upsample.

Given three levels it is YOLOv6 v2.0's RepPANNeck (upsample, then concatenate). Given four,
the finest (/4, YOLOv6's ``fuse_P2``) lets both top-down merges be v3.0's BiC
(RepBiFPANNeck): the upsampled coarser map, the lateral level through a 1x1 conv and the
finer level through a 1x1 and a 3x3 stride-2 conv, concatenated and fused by a 1x1 conv.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ...nn.conv_bn_act import ConvBNAct
from ...nn.repvgg import rep_block
from .pan import PathAggregationNeck, UpConcat

# YOLOv6 repeats each neck RepBlock max(round(12 * depth), 1) times (depth 0.33 for N/S).
BASE_DEPTH = 12


def transpose_upsample(channels: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(channels, channels, 2, 2, bias=True)


class BiFusion(nn.Module):
    """BiC: joins three neighbouring levels at the lateral one's size, ``out`` channels wide
    (the coarser map must already be that wide)."""

    def __init__(self, lateral: int, lower: int, out_channels: int, act: str):
        super().__init__()
        self.upsample = transpose_upsample(out_channels)
        self.lateral = ConvBNAct(lateral, out_channels, 1, act=act)
        self.lower = nn.Sequential(ConvBNAct(lower, out_channels, 1, act=act),
                                   ConvBNAct(out_channels, out_channels, 3, 2, act=act))
        self.merge = ConvBNAct(3 * out_channels, out_channels, 1, act=act)

    def forward(self, upper: torch.Tensor, lateral: torch.Tensor, lower: torch.Tensor | None) -> torch.Tensor:
        return self.merge(torch.cat((self.upsample(upper), self.lateral(lateral), self.lower(lower)), 1))


class RepPANNeck(PathAggregationNeck):
    max_levels = 4

    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int], depth: float = 1.0,
                 act: str = "relu", reparam: bool = True):
        self.repeats, self.act, self.reparam = max(round(BASE_DEPTH * depth), 1), act, reparam
        self.bic = len(in_channels) == 4
        super().__init__(in_channels, out_channels)

    def make_lateral(self, in_channels: int, out_channels: int) -> nn.Module:
        return ConvBNAct(in_channels, out_channels, 1, act=self.act)

    def make_merge(self, upper: int, lateral: int, lower: int | None) -> tuple[nn.Module, int]:
        if self.bic:
            return BiFusion(lateral, lower, upper, self.act), upper
        return UpConcat(transpose_upsample(upper)), upper + lateral

    def make_node(self, name: str, in_channels: int, out_channels: int) -> nn.Module:
        return rep_block(in_channels, out_channels, self.repeats, 3, self.act, self.reparam)

    def make_down(self, channels: int) -> nn.Module:
        return ConvBNAct(channels, channels, 3, 2, act=self.act)
