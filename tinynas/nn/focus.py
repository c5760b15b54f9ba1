"""Focus stem: space-to-depth (2x2 pixels -> 4x channels), then a conv-BN-act."""

from __future__ import annotations

import torch
from torch import nn

from .conv_bn_act import ConvBNAct


def space_to_depth(x: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> [N, 4C, H/2, W/2]; the slice order is DAMO-YOLO's (and YOLOX's)."""
    return torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), dim=1)


class Focus(nn.Module):
    """Halves the resolution without losing pixels, so the searched stem runs at stride 1."""

    def __init__(self, image_channels: int, out_channels: int, kernel: int = 3, act: str | None = "relu"):
        super().__init__()
        self.conv = ConvBNAct(4 * image_channels, out_channels, kernel, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(space_to_depth(x))
