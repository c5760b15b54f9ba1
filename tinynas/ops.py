"""``ConvOp``: the key shared by the profiler, the latency table and the predictor."""

from __future__ import annotations

from dataclasses import dataclass

from .arch import Arch, BlockSpec, conv_out_size
from .layout import Conv, InnerBlock, block_layout

REGULAR = "regular"
DEPTHWISE = "depthwise"


@dataclass(frozen=True, order=True)
class ConvOp:
    """One convolution as a device runs it: BN folded, activation included.

    ``height`` and ``width`` are the input's; ``fused_residual`` marks the conv whose
    output the residual is added to (the add is timed as part of it).
    """

    kind: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    height: int
    width: int
    fused_residual: bool = False
    groups: int = 1

    @property
    def out_height(self) -> int:
        return conv_out_size(self.height, self.stride)

    @property
    def out_width(self) -> int:
        return conv_out_size(self.width, self.stride)


def conv_op(conv: Conv, size: int, fused: bool = False) -> ConvOp:
    """``conv`` run on a ``size x size`` input; ``fused``: the residual add is timed with it."""
    depthwise = conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels
    return ConvOp(DEPTHWISE if depthwise else REGULAR, conv.in_channels, conv.out_channels,
                  conv.kernel, conv.stride, size, size, fused, conv.groups)


def unit_ops(inner: InnerBlock, size: int) -> tuple[list[ConvOp], int]:
    """The convolutions of one unit seen at ``size`` (its projection at the output size), and
    the unit's output size."""
    out: list[ConvOp] = []
    h = size
    last = len(inner.convs) - 1
    for i, conv in enumerate(inner.convs):
        out.append(conv_op(conv, h, inner.residual and i == last))
        h = conv_out_size(h, conv.stride)
    if inner.projection is not None:
        out.append(conv_op(inner.projection, h))
    return out, h


def block_op_counts(spec: BlockSpec, in_size: int) -> tuple[list[tuple[ConvOp, int]], int]:
    """The distinct convolutions of one block seen at ``in_size``, and its output size."""
    out: list[tuple[ConvOp, int]] = []
    size = in_size
    for inner, repeat in block_layout(spec):
        ops, size = unit_ops(inner, size)
        out.extend((op, repeat) for op in ops)
    return out, size


def conv_op_counts(arch: Arch, resolution: int) -> list[tuple[ConvOp, int]]:
    """Each distinct convolution of ``arch`` in execution order, with its repeat count."""
    out: list[tuple[ConvOp, int]] = []
    size = resolution
    for spec in arch.blocks:
        ops, size = block_op_counts(spec, size)
        out.extend(ops)
    return out


def conv_ops(arch: Arch, resolution: int) -> list[ConvOp]:
    """Every convolution of ``arch``, repeats expanded."""
    return [op for op, repeat in conv_op_counts(arch, resolution) for _ in range(repeat)]
