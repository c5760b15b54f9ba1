"""Conv -> BatchNorm -> activation, foldable into a single conv with bias."""

from __future__ import annotations

import torch
from torch import nn

from .activation import get_activation
from .point_conv import conv2d


class ConvBNAct(nn.Module):
    """A same-padded conv, its BatchNorm and an optional activation.

    ``fuse()`` folds the BatchNorm into the conv (weight scaled, bias added) and deletes it;
    calling it twice is harmless.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1,
                 groups: int = 1, act: str | None = "relu", bn_eps: float = 1e-5,
                 bn_momentum: float = 0.1):
        super().__init__()
        self.conv = conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum)
        self.act = get_activation(act) if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)

    @torch.no_grad()
    def fuse(self) -> "ConvBNAct":
        if self.bn is None:
            return self
        bn, conv = self.bn, self.conv
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                          conv.padding, groups=conv.groups, bias=True).to(conv.weight)
        fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused.bias.copy_(bn.bias + (bias - bn.running_mean) * scale)
        self.conv = fused
        self.bn = None
        return self
