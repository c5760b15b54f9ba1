"""RepConv: a k x k conv+BN and a 1x1 conv+BN summed at training time, one k x k conv after fuse.

Both branches are linear up to the shared activation, so their sum is itself a single k x k
convolution: the 1x1 kernel sits at the centre of a zero k x k kernel. There is no identity
branch, as in DAMO-YOLO's form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .activation import get_activation
from .point_conv import conv2d


def _fold_bn(weight: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernel and bias of ``bn(conv(x))`` for a bias-free conv with ``weight``."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return weight * scale.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


class RepConv(nn.Module):
    """k x k (odd k) and 1x1 branches, each with BatchNorm, summed, then the activation.

    ``fuse()`` replaces the two branches with one biased k x k conv; it is idempotent.
    ``fused=True`` builds that deploy form directly, so fused state dicts load into it.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1,
                 groups: int = 1, act: str | None = "relu", fused: bool = False):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"RepConv needs an odd kernel, got {kernel}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel, self.stride, self.groups = kernel, stride, groups
        self.act = get_activation(act) if act is not None else nn.Identity()
        self.conv: nn.Conv2d | None = None
        self.dense: nn.Sequential | None = None
        self.point: nn.Sequential | None = None
        if fused:
            self.conv = self._deploy_conv()
        else:
            self.dense = self._branch(kernel)
            self.point = self._branch(1)

    def _branch(self, kernel: int) -> nn.Sequential:
        return nn.Sequential(
            conv2d(self.in_channels, self.out_channels, kernel, self.stride, kernel // 2, groups=self.groups,
                   bias=False),
            nn.BatchNorm2d(self.out_channels),
        )

    def _deploy_conv(self) -> nn.Conv2d:
        return nn.Conv2d(self.in_channels, self.out_channels, self.kernel, self.stride,
                         self.kernel // 2, groups=self.groups, bias=True)

    @property
    def is_fused(self) -> bool:
        return self.conv is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is not None:
            return self.act(self.conv(x))
        return self.act(self.dense(x) + self.point(x))

    @torch.no_grad()
    def equivalent_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The single k x k kernel and bias equal to the two branches in eval mode."""
        w_dense, b_dense = _fold_bn(self.dense[0].weight, self.dense[1])
        w_point, b_point = _fold_bn(self.point[0].weight, self.point[1])
        pad = self.kernel // 2
        return w_dense + F.pad(w_point, [pad, pad, pad, pad]), b_dense + b_point

    @torch.no_grad()
    def fuse(self) -> "RepConv":
        if self.conv is not None:
            return self
        weight, bias = self.equivalent_kernel()
        conv = self._deploy_conv().to(weight)
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
        self.conv = conv
        self.dense = None
        self.point = None
        return self
