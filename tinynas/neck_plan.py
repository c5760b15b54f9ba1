"""The convolutions of a detector's neck and head, in closed form, for given backbone levels.

The neck (Efficient RepGFPN, ``detect/neck.py``) and head (ZeroHead, ``detect/head.py``) of
a model recipe are fixed; only the three level channels and sizes the backbone hands them
change from one searched backbone to the next. Listing their fused convolutions from those
values, without building the modules, is what lets a search price a whole detector per
candidate: tests pin this list to what the fused detector really runs
(``detect.conv_ops.detector_op_counts``). No torch is imported here.

Fused form: a RepConv is one 3x3 conv, every BatchNorm is folded, the head's scales are in
its box convs. The neck's bottleneck adds its input after its second conv, but that add is
not timed with it (``fused_residual`` marks residual backbone units only, as the traced list does).
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from .layout import Conv
from .ops import conv_op
from .plan import OpCounts


def fusion_convs(cin: int, cout: int, n: int, hidden_ratio: float) -> list[Conv]:
    """FusionStage(cin, cout): two 1x1 halves, ``n`` RepBottlenecks on one, a 1x1 merge."""
    first = cout // 2
    mid = cout - first
    hidden = int(mid * hidden_ratio)
    convs = [Conv(cin, first, 1), Conv(cin, mid, 1)]
    convs += [Conv(mid, hidden, 3), Conv(hidden, mid, 3)] * n
    convs.append(Conv(first + mid * n, cout, 1))
    return convs


def neck_convs(channels: Sequence[int], sizes: Sequence[int], out_channels: Sequence[int],
               depth: float, hidden_ratio: float) -> list[tuple[Conv, int]]:
    """GiraffeNeckV2's convolutions with the input size each one sees.

    ``channels``/``sizes``: the backbone levels at strides 8, 16, 32; ``out_channels``: the
    neck's outputs at the same strides. Nodes as ``detect/neck.py`` wires them.
    """
    c2, c1, c0 = channels
    s8, s16, s32 = sizes
    o0, o1, o2 = out_channels
    n = round(3 * depth)

    def down(ch: int, size: int) -> list[tuple[Conv, int]]:
        return [(Conv(ch, ch, 3, 2), size)]

    def node(cin: int, cout: int, size: int) -> list[tuple[Conv, int]]:
        return [(conv, size) for conv in fusion_convs(cin, cout, n, hidden_ratio)]

    return (down(c1, s16) + node(c0 + c1, c0, s32)
            + down(c2, s8) + node(c1 + c2 + c0, c1, s16)
            + node(c2 + c1, o0, s8)
            + down(o0, s8) + node(c1 + o0, o1, s16)
            + down(c1, s16) + down(o1, s16) + node(c0 + c1 + o1, o2, s32))


def head_convs(out_channels: Sequence[int], sizes: Sequence[int], num_classes: int,
               reg_max: int) -> list[tuple[Conv, int]]:
    """ZeroHead: per level one 3x3 class conv and one 3x3 box conv."""
    out = []
    for ch, size in zip(out_channels, sizes):
        out += [(Conv(ch, num_classes, 3), size), (Conv(ch, 4 * (reg_max + 1), 3), size)]
    return out


def neck_head_op_counts(neck, head, channels: Sequence[int], sizes: Sequence[int]) -> OpCounts:
    """The fused neck's and head's convolutions for backbone levels of ``channels`` at
    ``sizes`` (strides 8, 16, 32). ``neck`` and ``head`` are a recipe's ``NeckConfig`` and
    ``HeadConfig`` (or anything with their fields)."""
    convs = neck_convs(channels, sizes, neck.out_channels, neck.depth, neck.hidden_ratio)
    convs += head_convs(neck.out_channels, sizes, head.num_classes, head.reg_max)
    return tuple(sorted(Counter(conv_op(conv, size) for conv, size in convs).items()))

