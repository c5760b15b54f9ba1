"""Every convolution a search space can produce, as a grid of ``ConvOp`` to measure.

A space fixes each block position's class and stride, hence the spatial size each of its
convolutions sees; only channel counts vary. For each position we list the values its
``in``, ``out`` and ``btn`` can take, read the block's convolutions off ``block_layout``
(so the grid agrees with the predictor and the torch modules by construction), and group
the results by everything but channels: (kind, kernel, stride, size, fused, groups).
Stride-2 residual units add their shortcut pooling (``netops``) to the grid. Each
group is a full rectilinear grid (C_in values x C_out values), which is what makes
multilinear interpolation exact on its points and monotone between them.

``channel_step`` thins each channel axis to its end points plus the multiples of the step:
the full grid of the detection spaces is too large to time on a CPU, and latency is close
to bilinear in (C_in, C_out), which bilinear interpolation reproduces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from ..arch import BlockSpec, conv_out_size
from ..ops import ConvOp
from ..space import SearchSpace
from .netops import CHANNELWISE, block_ops

# Distinct sentinel channel counts: an op's channels tell which variable they came from.
_IN, _OUT, _BTN = 1_000_003, 2_000_029, 3_000_017


@dataclass(frozen=True)
class GroupKey:
    """What an op shares with its grid neighbours: everything except channel counts."""

    kind: str
    kernel: int
    stride: int
    height: int
    width: int
    fused_residual: bool
    groups: int  # 1 for regular convs; 0 for channel-wise ops (depthwise, avgpool)

    @classmethod
    def of(cls, op: ConvOp) -> "GroupKey":
        groups = 0 if op.kind in CHANNELWISE else op.groups
        return cls(op.kind, op.kernel, op.stride, op.height, op.width, op.fused_residual, groups)


@dataclass
class GridGroup:
    key: GroupKey
    in_values: set[int]
    out_values: set[int]

    def ops(self) -> list[ConvOp]:
        k = self.key
        if k.kind in CHANNELWISE:
            return [ConvOp(k.kind, c, c, k.kernel, k.stride, k.height, k.width, k.fused_residual, c)
                    for c in sorted(self.in_values | self.out_values)]
        return [ConvOp(k.kind, ci, co, k.kernel, k.stride, k.height, k.width, k.fused_residual, k.groups)
                for ci in sorted(self.in_values) for co in sorted(self.out_values)]


def channel_values(lo: int, hi: int, divisor: int, extra: Iterable[int] = ()) -> list[int]:
    """Every channel count in [lo, hi] the space can reach: multiples of the divisor and the
    bounds themselves (mutation clamps onto them), plus values of the initial architecture."""
    values = {v for v in range(-(-lo // divisor) * divisor, hi + 1, divisor)}
    values.update((lo, hi))
    values.update(v for v in extra if lo <= v <= hi)
    return sorted(values)


def btn_values(space: SearchSpace, index: int, outs: list[int]) -> list[int]:
    """Bottleneck widths block ``index`` can take over all its out widths (SearchSpace._fit_btn)."""
    lim, d = space.limits[index], space.channel_divisor
    values: set[int] = set()
    for out in outs:
        lo = max(1, math.ceil(out * lim.btn_ratio[0] - 1e-9))
        hi = max(1, math.floor(out * lim.btn_ratio[1] + 1e-9))
        lo_d, hi_d = -(-lo // d) * d, hi // d * d
        if lo_d <= hi_d:
            values.update(range(lo_d, hi_d + 1, d))
        else:
            values.update((lo, hi))
    initial = space.initial.blocks[index].bottleneck
    if initial is not None:
        values.add(initial)
    return sorted(values)


def coarsen(values: list[int], step: int | None) -> list[int]:
    """End points plus the multiples of ``step`` (all values when ``step`` is None)."""
    if not step or len(values) <= 2:
        return list(values)
    lo, hi = values[0], values[-1]
    return sorted({lo, hi} | {v for v in values if v % step == 0})


def block_input_sizes(space: SearchSpace, resolution: int) -> list[int]:
    sizes, size = [], resolution
    for spec in space.initial.blocks:
        sizes.append(size)
        size = conv_out_size(size, spec.stride)
    return sizes


def _templates(spec: BlockSpec, size: int) -> list[tuple[ConvOp, str, str]]:
    """The block's ops with sentinel channels, each with the variable names of its channels."""
    names = {_IN: "in", _OUT: "out", _BTN: "btn"}
    out = []
    has_btn = spec.kind.has_bottleneck
    # Two shapes: in != out (projection present) and in == out (identity shortcut; this is
    # also the only case where an inverted-residual block fuses its residual).
    cases = [(_IN, names), (_OUT, {_OUT: "io", _BTN: "btn"})]
    for cin, mapping in cases:
        rep = spec.replace(in_channels=cin, out_channels=_OUT, bottleneck=_BTN if has_btn else None)
        for op, _ in block_ops(rep, size)[0]:
            out.append((op, mapping[op.in_channels], mapping[op.out_channels]))
    return out


def space_groups(space: SearchSpace, resolution: int | None = None,
                 channel_step: int | None = None) -> dict[GroupKey, GridGroup]:
    """The grid of ``space`` at ``resolution`` (default: the space's own), grouped."""
    resolution = resolution or space.resolution
    sizes = block_input_sizes(space, resolution)
    groups: dict[GroupKey, GridGroup] = {}
    previous_out = [space.in_channels]
    for i, (ref, lim, size) in enumerate(zip(space.initial.blocks, space.limits, sizes)):
        outs = channel_values(lim.out[0], lim.out[1], space.channel_divisor, (ref.out_channels,))
        values = {"in": previous_out, "out": outs, "io": sorted(set(previous_out) & set(outs))}
        if ref.kind.has_bottleneck:
            values["btn"] = btn_values(space, i, outs)
        values = {name: coarsen(v, channel_step) for name, v in values.items()}
        depth = min(2, lim.depth[1]) if ref.kind.has_bottleneck else 1
        for kernel in lim.kernels:
            spec = ref.replace(kernel=kernel, depth=depth)
            for op, in_name, out_name in _templates(spec, size):
                if not values[in_name] or not values[out_name]:
                    continue
                key = GroupKey.of(op)
                group = groups.setdefault(key, GridGroup(key, set(), set()))
                group.in_values.update(values[in_name])
                group.out_values.update(values[out_name])
        previous_out = outs
    return groups


def merge_groups(*grids: dict[GroupKey, GridGroup]) -> dict[GroupKey, GridGroup]:
    merged: dict[GroupKey, GridGroup] = {}
    for grid in grids:
        for key, group in grid.items():
            target = merged.setdefault(key, GridGroup(key, set(), set()))
            target.in_values |= group.in_values
            target.out_values |= group.out_values
    return merged


def grid_ops(groups: dict[GroupKey, GridGroup]) -> list[ConvOp]:
    """Every op of the grid, sorted so a build measures in a stable, resumable order."""
    return sorted({op for group in groups.values() for op in group.ops()})


def space_grid(space: SearchSpace, resolution: int | None = None,
               channel_step: int | None = None) -> list[ConvOp]:
    return grid_ops(space_groups(space, resolution, channel_step))


def covered(groups: dict[GroupKey, GridGroup], op: ConvOp) -> bool:
    """True when ``op`` lies inside the interpolation hull of the grid group it belongs to."""
    group = groups.get(GroupKey.of(op))
    if group is None:
        return False
    if op.kind in CHANNELWISE:
        channels = group.in_values | group.out_values
        return min(channels) <= op.in_channels <= max(channels)
    return (min(group.in_values) <= op.in_channels <= max(group.in_values)
            and min(group.out_values) <= op.out_channels <= max(group.out_values))
