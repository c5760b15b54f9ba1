"""The path-aggregation topology that YOLOX's PAFPN, YOLOX-PAI's GSConv neck and YOLOv6's
Rep-PAN share; subclasses choose the modules at each place.

Inputs are three levels (x2 /8, x1 /16, x0 /32), or four when a subclass uses the finest
(x3 /4) in its top-down merges. With outputs (o0, o1, o2), in YOLOX's names::

    fpn_out0 = lateral0(x0)                      # width o1
    f_out0   = p4(merge0(fpn_out0, x1, x2))      # width o1
    fpn_out1 = lateral1(f_out0)                  # width o0
    pan_out2 = p3(merge1(fpn_out1, x2, x3))      # width o0, returned at /8
    pan_out1 = n3(cat(down1(pan_out2), fpn_out1))  # width o1, /16
    pan_out0 = n4(cat(down0(pan_out1), fpn_out0))  # width o2, /32

With inputs as wide as the outputs this is exactly the published layout; other widths keep
the topology and take each node's width from the outputs.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def _up(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")


class UpConcat(nn.Module):
    """The plain top-down merge: upsample the coarser map (nearest, or a module) and
    concatenate it with the lateral level; the finer level is not used."""

    def __init__(self, upsample: nn.Module | None = None):
        super().__init__()
        self.upsample = upsample

    def forward(self, upper: torch.Tensor, lateral: torch.Tensor, lower: torch.Tensor | None) -> torch.Tensor:
        up = self.upsample(upper) if self.upsample is not None else _up(upper)
        return torch.cat([up, lateral], 1)


class PathAggregationNeck(nn.Module):
    """Top-down then bottom-up over three levels; see the module docstring."""

    max_levels = 3

    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int]):
        super().__init__()
        if len(in_channels) not in range(3, self.max_levels + 1) or len(out_channels) != 3:
            raise ValueError(f"{type(self).__name__} takes 3{' or 4' if self.max_levels == 4 else ''} "
                             f"levels in and gives 3 out, got {len(in_channels)} and {len(out_channels)}")
        self.in_channels, self.out_channels = tuple(in_channels), tuple(out_channels)
        *finest, c2, c1, c0 = in_channels
        c3 = finest[0] if finest else None
        o0, o1, o2 = out_channels
        self.lateral0 = self.make_lateral(c0, o1)
        self.merge0, width = self.make_merge(o1, c1, c2)
        self.p4 = self.make_node("p4", width, o1)
        self.lateral1 = self.make_lateral(o1, o0)
        self.merge1, width = self.make_merge(o0, c2, c3)
        self.p3 = self.make_node("p3", width, o0)
        self.down1 = self.make_down(o0)
        self.n3 = self.make_node("n3", 2 * o0, o1)
        self.down0 = self.make_down(o1)
        self.n4 = self.make_node("n4", 2 * o1, o2)

    def make_lateral(self, in_channels: int, out_channels: int) -> nn.Module:
        raise NotImplementedError

    def make_merge(self, upper: int, lateral: int, lower: int | None) -> tuple[nn.Module, int]:
        """The top-down merge of a coarser map (``upper`` channels) into a lateral level,
        and the width it gives."""
        return UpConcat(), upper + lateral

    def make_node(self, name: str, in_channels: int, out_channels: int) -> nn.Module:
        raise NotImplementedError

    def make_down(self, channels: int) -> nn.Module:
        raise NotImplementedError

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        *finest, x2, x1, x0 = features
        x3 = finest[0] if finest else None
        fpn_out0 = self.lateral0(x0)
        f_out0 = self.p4(self.merge0(fpn_out0, x1, x2))
        fpn_out1 = self.lateral1(f_out0)
        pan_out2 = self.p3(self.merge1(fpn_out1, x2, x3))
        pan_out1 = self.n3(torch.cat([self.down1(pan_out2), fpn_out1], 1))
        pan_out0 = self.n4(torch.cat([self.down0(pan_out1), fpn_out0], 1))
        return pan_out2, pan_out1, pan_out0
