"""MACs, params and layers of an architecture, in closed form.

MACs count the multiply-accumulates of convolutions (and linear layers, which the
backbones here do not have); FLOPs are reported as 2 x MACs. ``params`` counts the module
as built for training (conv weights plus BatchNorm's weight and bias); ``params_fused``
counts the deploy form, where each BatchNorm is folded into a conv bias.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from .arch import Arch, BlockSpec, conv_out_size
from .layout import Conv, block_layout


@dataclass(frozen=True)
class Costs:
    macs: int
    params: int
    params_fused: int
    layers: int
    out_size: int

    @property
    def flops(self) -> int:
        return 2 * self.macs


def _conv_costs(conv: Conv, in_size: int) -> tuple[int, int, int, int]:
    out = conv_out_size(in_size, conv.stride)
    weights = conv.weight_count()
    return weights * out * out, weights + 2 * conv.out_channels, weights + conv.out_channels, out


@lru_cache(maxsize=1 << 17)
def block_costs(spec: BlockSpec, in_size: int) -> Costs:
    """Costs of one block given the spatial size of its input."""
    macs = params = fused = 0
    size = in_size
    for inner, repeat in block_layout(spec):
        inner_macs = inner_params = inner_fused = 0
        h = size
        for conv in inner.convs:
            m, p, f, h = _conv_costs(conv, h)
            inner_macs, inner_params, inner_fused = inner_macs + m, inner_params + p, inner_fused + f
        if inner.projection is not None:
            # The shortcut is pooled first, so its 1x1 conv runs at the output size.
            m, p, f, _ = _conv_costs(inner.projection, h)
            inner_macs, inner_params, inner_fused = inner_macs + m, inner_params + p, inner_fused + f
        macs += repeat * inner_macs
        params += repeat * inner_params
        fused += repeat * inner_fused
        size = h
    return Costs(macs, params, fused, spec.layers, size)


def arch_costs(arch: Arch, resolution: int) -> Costs:
    """Total costs of ``arch`` on a ``resolution`` x ``resolution`` input."""
    macs = params = fused = layers = 0
    size = resolution
    for spec in arch.blocks:
        c = block_costs(spec, size)
        macs += c.macs
        params += c.params
        fused += c.params_fused
        layers += c.layers
        size = c.out_size
    return Costs(macs, params, fused, layers, size)


def costs_by_block(arch: Arch, resolution: int) -> list[Costs]:
    """Per-block costs, in order; their sum is ``arch_costs``."""
    out = []
    size = resolution
    for spec in arch.blocks:
        c = block_costs(spec, size)
        out.append(c)
        size = c.out_size
    return out
