"""YOLOX's PAFPN: 1x1 laterals, nearest upsampling, CSPLayer nodes, 3x3 stride-2 downsamplers."""

from __future__ import annotations

from typing import Sequence

from torch import nn

from ...nn.conv_bn_act import ConvBNAct
from .csp_layer import CSPLayer
from .pan import PathAggregationNeck

# YOLOX repeats each CSPLayer round(3 * depth) times (depth 0.33 for S, 1.0 for L).
BASE_DEPTH = 3


class PAFPN(PathAggregationNeck):
    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int], depth: float = 1.0,
                 act: str = "silu"):
        self.repeats, self.act = round(BASE_DEPTH * depth), act
        super().__init__(in_channels, out_channels)

    def make_lateral(self, in_channels: int, out_channels: int) -> nn.Module:
        return ConvBNAct(in_channels, out_channels, 1, act=self.act)

    def make_node(self, name: str, in_channels: int, out_channels: int) -> nn.Module:
        return CSPLayer(in_channels, out_channels, self.repeats, False, self.act)

    def make_down(self, channels: int) -> nn.Module:
        return ConvBNAct(channels, channels, 3, 2, act=self.act)
