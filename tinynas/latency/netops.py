"""The ops a latency table prices for one block: its convolutions plus shortcut pooling.

``ops.block_op_counts`` lists a block's convolutions. A deployed residual unit with stride 2
also average-pools its shortcut (2x2, ceil mode) before the projection or the add; on a CPU
that pass over the unit's whole input costs as much as a 1x1 conv (27 ms for 64x320x320 on
one thread), so tables built here time it as an op of kind ``avgpool`` (C_in -> C_in, k2 s2,
input size). Tables without avgpool rows (TinyNAS's TensorRT tables) leave it out.
"""

from __future__ import annotations

from functools import lru_cache

from ..arch import BlockSpec, conv_out_size
from ..layout import block_layout
from ..ops import DEPTHWISE, ConvOp, block_op_counts

AVGPOOL = "avgpool"
# Kinds whose output channels equal their input channels: one channel axis, not two.
CHANNELWISE = (DEPTHWISE, AVGPOOL)


@lru_cache(maxsize=1 << 16)
def block_ops(spec: BlockSpec, in_size: int, pools: bool = True) -> tuple[tuple[tuple[ConvOp, int], ...], int]:
    """(op, repeat count) for every distinct op of the block, and the block's output size."""
    convs, out_size = block_op_counts(spec, in_size)
    if not pools:
        return tuple(convs), out_size
    extra, size = [], in_size
    for inner, repeat in block_layout(spec):
        if inner.residual and inner.stride == 2:
            c = inner.in_channels
            extra.append((ConvOp(AVGPOOL, c, c, 2, 2, size, size, False, c), repeat))
        size = conv_out_size(size, inner.stride)
    return tuple(convs) + tuple(extra), out_size
