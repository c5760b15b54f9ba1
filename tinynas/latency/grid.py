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

``detector_groups`` is the grid of the detectors a search builds: every backbone of a space
in a model recipe's wrap (``tinynas.plan``), with the recipe's neck and head over every
triple of level widths the space allows (``tinynas.neck_plan``), at the recipe's image size.
The wrap regroups and re-shortcuts blocks and the neck adds level widths together, so its
ops are not read off sentinel templates: each stage's channel choices are enumerated
outright (over the thinned values) and the ops collected, then grouped like the rest.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from typing import Iterable

from ..arch import BlockSpec, conv_out_size
from ..errors import UserError
from ..neck_plan import neck_head_op_counts
from ..ops import ConvOp
from ..plan import (backbone_op_counts, csp_stage_op_counts, csp_stages, output_ends, plan, res_block_op_counts,
                    res_spp_block, stem_op_counts)
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


# Past this many channel choices in one stage, enumerating them outright takes minutes:
# the user is asked for a coarser --channel-step instead.
MAX_STAGE_CHOICES = 2_000_000


def _position_choices(space: SearchSpace, index: int, channel_step: int | None) -> list[BlockSpec]:
    """What block ``index`` can become, as specs whose ``in`` is left to the caller: every
    (out, btn, kernel) of the thinned grid, at the depth that shows every distinct unit."""
    ref, lim = space.initial.blocks[index], space.limits[index]
    outs = coarsen(channel_values(lim.out[0], lim.out[1], space.channel_divisor, (ref.out_channels,)),
                   channel_step)
    btns = coarsen(btn_values(space, index, outs), channel_step) if ref.kind.has_bottleneck else [None]
    # Depth 2 holds both distinct units of a block (the first, and the repeated rest).
    depth = min(2, lim.depth[1]) if ref.kind.has_bottleneck else 1
    return [ref.replace(out_channels=o, bottleneck=b, kernel=k, depth=depth)
            for o in outs for b in btns for k in lim.kernels]


def _stage_variants(choices: list[list[BlockSpec]], blocks: tuple[int, ...], ins: list[int],
                    base: list[BlockSpec]) -> list[tuple[int, list[BlockSpec]]]:
    """(stage input channels, block specs) cases that together produce every op the stage can.

    A unit's convs depend on its own block's choice and on the width it receives, i.e. the
    previous block's ``out`` (or the stage's input); the CSP split and merge convs on the first
    and last block's ``out``. So each block is varied against every width it can receive, the
    other blocks held at one legal choice, instead of listing the product of all blocks.
    """
    cases = [(cin, [pick] + base[1:]) for cin in ins for pick in choices[blocks[0]]]
    for j in range(1, len(blocks)):
        one_per_width = {spec.out_channels: spec for spec in choices[blocks[j - 1]]}
        for previous in one_per_width.values():
            for pick in choices[blocks[j]]:
                specs = list(base)
                specs[j - 1], specs[j] = previous, pick
                cases.append((ins[0], specs))
    return cases


def _chain(specs: Iterable[BlockSpec], cin: int) -> tuple[BlockSpec, ...]:
    out = []
    for spec in specs:
        out.append(spec.replace(in_channels=cin))
        cin = spec.out_channels
    return tuple(out)


def detector_ops(space: SearchSpace, recipe, size: int, channel_step: int | None = None) -> set[ConvOp]:
    """Every op of the detectors ``recipe`` makes of ``space``'s backbones at image ``size``."""
    b = recipe.backbone
    source = f"{recipe.name or 'model'} over {space.name}"
    try:
        layout = plan(space.initial, b.wrap, b.focus, b.out_indices or None, size, b.spp)
    except ValueError as err:
        raise UserError(source, "backbone", f"the space's architectures cannot take this wrap: {err}") from None
    if layout.strides != tuple(recipe.head.strides):
        raise UserError(source, "backbone.out_indices", f"the space's levels {list(layout.out_indices)} are at "
                        f"strides {list(layout.strides)}, the head expects {list(recipe.head.strides)}")
    sizes = backbone_op_counts(space.initial, b.wrap, b.focus, size, b.spp)[1]
    choices = [_position_choices(space, i, channel_step) for i in range(len(space.initial.blocks))]
    ops: set[ConvOp] = set()
    for stem in choices[0]:
        ops.update(op for op, _ in stem_op_counts.__wrapped__(stem, size, b.focus)[0])
    if b.wrap == "res":
        spp_block = res_spp_block(space.initial, b.spp)
        segments = [((i,), i == spp_block) for i in range(1, len(space.initial.blocks))]
    else:
        groups = csp_stages(space.initial)
        segments = [(group, b.spp and n == len(groups) - 1) for n, group in enumerate(groups)]
    for blocks, spp in segments:
        ins = sorted({spec.out_channels for spec in choices[blocks[0] - 1]})
        base = [choices[i][0] for i in blocks]
        cases = _stage_variants(choices, blocks, ins, base)
        if len(cases) > MAX_STAGE_CHOICES:
            raise UserError("--channel-step", "", f"{len(cases)} channel choices in blocks {list(blocks)} of "
                            f"{space.name} are too many to list: give a coarser --channel-step")
        in_size = sizes[blocks[0] - 1]
        for cin, picked in cases:
            specs = _chain(picked, cin)
            if b.wrap == "res":
                found = res_block_op_counts.__wrapped__(specs[0], in_size, spp)[0]
            else:
                found = csp_stage_op_counts.__wrapped__(specs, in_size, spp)[0]
            ops.update(op for op, _ in found)
    level_sizes = [level.size for level in layout.levels]
    ends = output_ends(space.initial, b.wrap)
    level_values = [sorted({spec.out_channels for spec in choices[ends[i]]}) for i in layout.out_indices]
    for channels in itertools.product(*level_values):
        ops.update(op for op, _ in neck_head_op_counts(recipe.neck, recipe.head, channels, level_sizes))
    # The head's class convs follow the user's dataset, not the recipe's class count: a table
    # measures a spread of class counts so that any dataset's interpolates inside the grid.
    for num_classes in class_counts(recipe.head.num_classes):
        head = replace(recipe.head, num_classes=num_classes)
        ops.update(op for op, _ in neck_head_op_counts(recipe.neck, head, level_values_first(level_values),
                                                       level_sizes) if op.out_channels == num_classes)
    return ops


def class_counts(recipe_classes: int) -> list[int]:
    """1, 2, 4, ... up to COCO's 80 and the recipe's own count."""
    top = max(recipe_classes, 80)
    return sorted({*(2 ** i for i in range(top.bit_length()) if 2 ** i <= top), top, recipe_classes})


def level_values_first(level_values: list[list[int]]) -> tuple[int, ...]:
    """Any one level-width triple: the class convs read the neck's outputs, whose widths the
    recipe fixes whatever the backbone hands the neck."""
    return tuple(values[0] for values in level_values)


def detector_groups(space: SearchSpace, recipe, size: int,
                    channel_step: int | None = None) -> dict[GroupKey, GridGroup]:
    """``detector_ops`` grouped; each group's channel axes thinned to ``channel_step`` (the
    neck's summed widths take many values), end points kept so the hull stays whole."""
    groups: dict[GroupKey, GridGroup] = {}
    for op in detector_ops(space, recipe, size, channel_step):
        key = GroupKey.of(op)
        group = groups.setdefault(key, GridGroup(key, set(), set()))
        group.in_values.add(op.in_channels)
        group.out_values.add(op.out_channels)
    for group in groups.values():
        group.in_values = set(coarsen(sorted(group.in_values), channel_step))
        group.out_values = set(coarsen(sorted(group.out_values), channel_step))
    return groups
