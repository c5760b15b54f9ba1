"""``ConvOp``: the key shared by the profiler, the latency table and the predictor."""

from __future__ import annotations

from dataclasses import dataclass

from .arch import Arch, BlockSpec, conv_out_size
from .layout import Conv, block_layout

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


def _op(conv: Conv, size: int, fused: bool) -> ConvOp:
    depthwise = conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels
    return ConvOp(DEPTHWISE if depthwise else REGULAR, conv.in_channels, conv.out_channels,
                  conv.kernel, conv.stride, size, size, fused, conv.groups)


def block_op_counts(spec: BlockSpec, in_size: int) -> tuple[list[tuple[ConvOp, int]], int]:
    """The distinct convolutions of one block seen at ``in_size``, and its output size."""
    out: list[tuple[ConvOp, int]] = []
    size = in_size
    for inner, repeat in block_layout(spec):
        h = size
        last = len(inner.convs) - 1
        for i, conv in enumerate(inner.convs):
            out.append((_op(conv, h, inner.residual and i == last), repeat))
            h = conv_out_size(h, conv.stride)
        if inner.projection is not None:
            out.append((_op(inner.projection, h, False), repeat))
        size = h
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
