"""RepVGG units (YOLOv6's form): RepConv plus an identity branch, and RepBlock stacks of them.

YOLOv6 differs from DAMO-YOLO's RepConv in one branch: where a unit keeps its shape
(same channels, stride 1) a BatchNorm of the input itself is added to the k x k and 1x1
branches. That branch is also linear, so it merges into the same single conv on ``fuse()``.
"""

from __future__ import annotations

from torch import nn

from .conv_bn_act import ConvBNAct
from .repconv import RepConv


class RepVGGBlock(RepConv):
    """k x k, 1x1 and (when shapes allow) identity branches, summed, activated (forms as RepConv's)."""

    with_identity = True


def rep_unit(in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1,
             act: str | None = "relu", reparam: bool = True) -> nn.Module:
    """A RepVGG unit, or with ``reparam=False`` the plain conv-BN-act it fuses into."""
    if reparam:
        return RepVGGBlock(in_channels, out_channels, kernel, stride, act=act)
    return ConvBNAct(in_channels, out_channels, kernel, stride, act=act)


def rep_block(in_channels: int, out_channels: int, units: int, kernel: int = 3, act: str | None = "relu",
              reparam: bool = True) -> nn.Sequential:
    """YOLOv6's RepBlock: ``units`` RepVGG units in a row, the first one changes the width."""
    if units < 1:
        raise ValueError(f"a RepBlock needs at least one unit, got {units}")
    return nn.Sequential(rep_unit(in_channels, out_channels, kernel, 1, act, reparam),
                         *(rep_unit(out_channels, out_channels, kernel, 1, act, reparam)
                           for _ in range(units - 1)))
