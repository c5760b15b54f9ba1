"""RepVGG units (YOLOv6's form): RepConv plus an identity branch, and RepBlock stacks of them.

YOLOv6 differs from DAMO-YOLO's RepConv in one branch: where a unit keeps its shape
(same channels, stride 1) a BatchNorm of the input itself is added to the k x k and 1x1
branches. That branch is also linear, so it merges into the same single conv on ``fuse()``.
"""

from __future__ import annotations

import torch
from torch import nn

from .conv_bn_act import ConvBNAct
from .repconv import RepConv, _fold_bn


class RepVGGBlock(RepConv):
    """k x k, 1x1 and (when shapes allow) identity branches, each with BatchNorm, summed, activated."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1,
                 groups: int = 1, act: str | None = "relu", fused: bool = False):
        super().__init__(in_channels, out_channels, kernel, stride, groups, act=act, fused=fused)
        keeps_shape = in_channels == out_channels and stride == 1
        self.identity = nn.BatchNorm2d(in_channels) if keeps_shape and not fused else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is not None:
            return self.act(self.conv(x))
        out = self.dense(x) + self.point(x)
        if self.identity is not None:
            out = out + self.identity(x)
        return self.act(out)

    @torch.no_grad()
    def equivalent_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        weight, bias = super().equivalent_kernel()
        if self.identity is None:
            return weight, bias
        # The identity as a k x k kernel: a 1 at the centre, from each channel to itself
        # (within its group).
        per_group = self.in_channels // self.groups
        eye = torch.zeros_like(weight)
        channels = torch.arange(self.out_channels, device=weight.device)
        eye[channels, channels % per_group, self.kernel // 2, self.kernel // 2] = 1.0
        w_id, b_id = _fold_bn(eye, self.identity)
        return weight + w_id, bias + b_id

    @torch.no_grad()
    def fuse(self) -> "RepVGGBlock":
        super().fuse()
        self.identity = None
        return self


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
