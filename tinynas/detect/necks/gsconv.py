"""YOLOX-PAI's GSConv neck (slim-neck, "all" mode): the PAFPN topology with GSConv
transitions and VoV-GSCSP nodes.

GSConv makes half its output with a conv, the other half with a 5x5 depthwise conv of that
half, then interleaves the two halves (a channel shuffle), so dense and depthwise features
mix at the cost of mostly depthwise work. Every conv takes the neck's ``act`` (EasyCV fixes
SiLU inside VoV-GSCSP; the default is the same).
"""

from __future__ import annotations

import torch
from torch import nn

from ...nn.conv_bn_act import ConvBNAct
from .pafpn import PAFPN


def shuffle_halves(x: torch.Tensor) -> torch.Tensor:
    """Channels (0, 2, 4, ..., 1, 3, 5, ...) of ``x``: GSConv's shuffle, as a reshape."""
    n, c, h, w = x.shape
    return x.reshape(n, c // 2, 2, h, w).transpose(1, 2).reshape(n, c, h, w)


class GSConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1,
                 act: str | None = "silu"):
        super().__init__()
        if out_channels % 2:
            raise ValueError(f"GSConv builds its output from two halves; {out_channels} channels is odd")
        half = out_channels // 2
        self.dense = ConvBNAct(in_channels, half, kernel, stride, act=act)
        self.depthwise = ConvBNAct(half, half, 5, 1, half, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dense(x)
        return shuffle_halves(torch.cat((y, self.depthwise(y)), 1))


class GSBottleneck(nn.Module):
    """Two 1x1 GSConvs, through half the width; the second has no activation (EasyCV's form)."""

    def __init__(self, in_channels: int, out_channels: int, act: str):
        super().__init__()
        self.layers = nn.Sequential(GSConv(in_channels, out_channels // 2, 1, 1, act),
                                    GSConv(out_channels // 2, out_channels, 1, 1, None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class VoVGSCSP(nn.Module):
    """1x1 to half the output width, ``n`` GSBottlenecks, concatenated with their input, 1x1 out."""

    def __init__(self, in_channels: int, out_channels: int, n: int, act: str, expansion: float = 0.5):
        super().__init__()
        hidden = int(out_channels * expansion)
        self.enter = ConvBNAct(in_channels, hidden, 1, act=act)
        self.blocks = nn.Sequential(*(GSBottleneck(hidden, hidden, act) for _ in range(n)))
        self.merge = ConvBNAct(2 * hidden, out_channels, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.enter(x)
        return self.merge(torch.cat((self.blocks(y), y), 1))


class GSConvNeck(PAFPN):
    """``PAFPN`` with GSConv laterals and downsamplers and VoV-GSCSP nodes."""

    def make_lateral(self, in_channels: int, out_channels: int) -> nn.Module:
        return GSConv(in_channels, out_channels, 1, 1, self.act)

    def make_node(self, name: str, in_channels: int, out_channels: int) -> nn.Module:
        if name != "p3":
            return VoVGSCSP(in_channels, out_channels, self.repeats, self.act)
        # YOLOX-PAI mixes the /8 concatenation with one more GSConv first.
        return nn.Sequential(GSConv(in_channels, 2 * out_channels, 1, 1, self.act),
                             VoVGSCSP(2 * out_channels, out_channels, self.repeats, self.act))

    def make_down(self, channels: int) -> nn.Module:
        return GSConv(channels, channels, 3, 2, self.act)
