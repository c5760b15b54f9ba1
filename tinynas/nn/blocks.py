"""Torch modules for each block class, built from ``layout.block_layout``.

``BLOCK_BUILDERS`` maps a canonical class name to a callable ``(spec) -> nn.Module``;
``register_block`` lets another wrap (a detector backbone, say) supply its own form.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..arch import CONV, K1DWK1, K1KX, K1KXK1, KXKX, BlockSpec
from ..layout import InnerBlock, block_layout
from ..registry import Registry
from .activation import get_activation
from .conv_bn_act import ConvBNAct

# A block that names no activation has TinyNAS's default, as get_activation reads None.
DEFAULT_ACT = "relu"


class ResidualUnit(nn.Module):
    """One inner block: its conv path, an optional shortcut, then the activation."""

    def __init__(self, inner: InnerBlock, act: str | None = None):
        super().__init__()
        act = act or DEFAULT_ACT  # ConvBNAct reads None as "no activation"
        last = len(inner.convs) - 1
        self.path = nn.Sequential(*[
            ConvBNAct(c.in_channels, c.out_channels, c.kernel, c.stride, c.groups,
                      act=None if i == last else act)
            for i, c in enumerate(inner.convs)
        ])
        self.residual = inner.residual
        # ceil_mode keeps the pooled shortcut the same size as the strided conv on odd inputs.
        self.pool = nn.AvgPool2d(2, 2, ceil_mode=True) if inner.residual and inner.stride == 2 else None
        self.proj = None
        if inner.projection is not None:
            p = inner.projection
            self.proj = ConvBNAct(p.in_channels, p.out_channels, 1, act=None)
        self.act = get_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.path(x)
        if self.residual:
            shortcut = self.pool(x) if self.pool is not None else x
            if self.proj is not None:
                shortcut = self.proj(shortcut)
            out = out + shortcut
        return self.act(out)


class SuperBlock(nn.Sequential):
    """A block of depth L: L residual units, the first carrying the stride."""

    def __init__(self, spec: BlockSpec):
        units = []
        for inner, repeat in block_layout(spec):
            units.extend(ResidualUnit(inner, spec.act) for _ in range(repeat))
        super().__init__(*units)


def _conv_block(spec: BlockSpec) -> nn.Module:
    return ConvBNAct(spec.in_channels, spec.out_channels, spec.kernel, spec.stride,
                     spec.groups, act=spec.act or DEFAULT_ACT)


BLOCK_BUILDERS: Registry[Callable[[BlockSpec], nn.Module]] = Registry("block class", "class", {
    CONV: _conv_block, K1KX: SuperBlock, KXKX: SuperBlock, K1KXK1: SuperBlock, K1DWK1: SuperBlock,
}, hint="add one with tinynas.nn.register_block")


def register_block(cls: str, builder: Callable[[BlockSpec], nn.Module]) -> None:
    """Build blocks of class ``cls`` with ``builder`` (replacing the shipped form of a known class)."""
    BLOCK_BUILDERS.register(cls, builder, replace=True)


def create_block(spec: BlockSpec) -> nn.Module:
    # A spec built by hand can name any class; files are checked when they are read.
    return BLOCK_BUILDERS.lookup(spec.cls, "arch")(spec)
