"""The detector form of a searched ``Arch``, as data: what a Res or CSP wrap builds around it.

A detector does not run the searched network as the search prices it. Its wrap (DAMO-YOLO's
TinyNAS_res or TinyNAS_csp) changes the shortcuts, adds an SPP bottleneck, regroups blocks
into CSP stages, and a Focus stem space-to-depths the image so the searched stem runs at
stride 1 on a half-size input with four times the channels. ``plan`` states all of it once:
which blocks or stages feed the neck (index, channels, stride, size), the searched
``Arch`` as a latency table prices it, and every convolution the fused backbone runs. The
torch wraps (``nn/wrap_res.py``, ``nn/wrap_csp.py``) build their modules from the same
functions, so the plan and the modules cannot drift apart; this module imports no torch,
so a search can plan hundreds of thousands of candidates.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence

from .arch import CONV, Arch, BlockSpec, conv_out_size
from .layout import Conv, InnerBlock, detector_unit
from .ops import ConvOp, conv_op, unit_ops

WRAPS = ("res", "csp")
IMAGE_CHANNELS = 3
# SPPBottleneck's max-pool sizes (nn/spp.py): the projection reads the reduced map and one
# pooled copy per size.
SPP_POOLS = 3

OpCounts = tuple[tuple[ConvOp, int], ...]


@dataclass(frozen=True)
class Level:
    """One backbone output the neck reads: its block (res) or stage (csp) index, 0 the stem."""

    index: int
    channels: int
    stride: int  # image pixels per feature pixel
    size: int | None = None  # feature height and width at the plan's image size


@dataclass(frozen=True)
class CSPStageLayout:
    """One CSP stage: a 3x3 downsampler standing in for the leading block's first unit, an
    optional SPP, then (when any unit is left) a split into a half-width chain of residual
    units and a 1x1 shortcut half, concatenated and fused by a 1x1 conv."""

    down: Conv
    spp: bool
    units: tuple[InnerBlock, ...]
    unit_specs: tuple[BlockSpec, ...]  # the block each unit comes from
    split_main: Conv | None
    split_short: Conv | None
    merge: Conv | None


# ---------------------------------------------------------------------------- structure
def csp_stages(arch: Arch) -> list[tuple[int, ...]]:
    """Block indices of each stage after the stem: a new stage opens at every stride-2 block."""
    stages: list[list[int]] = []
    for i, spec in enumerate(arch.blocks[1:], start=1):
        if spec.stride == 2 or not stages:
            stages.append([i])
        else:
            stages[-1].append(i)
    return [tuple(s) for s in stages]


def last_stage_start(arch: Arch) -> int:
    """Index of the first block of the last stage (the last stride-2 block, else block 1):
    where the Res wrap puts its SPP, after that block's first unit."""
    strided = [i for i, b in enumerate(arch.blocks) if i > 0 and b.stride == 2]
    return strided[-1] if strided else min(1, len(arch.blocks) - 1)


def res_spp_block(arch: Arch, spp: bool) -> int | None:
    """The block the Res wrap puts its SPP in, if any."""
    return last_stage_start(arch) if spp and len(arch.blocks) > 1 else None


def default_res_outputs(arch: Arch) -> tuple[int, ...]:
    """The last block of each of the three deepest stages (DAMO-YOLO's (2, 4, 5) for T/S)."""
    return tuple(arch.stage_ends()[-3:])


def default_csp_outputs(arch: Arch) -> tuple[int, ...]:
    """The three deepest stages (DAMO-YOLO's (2, 3, 4) for M/L); 0 is the stem."""
    count = len(csp_stages(arch)) + 1
    return tuple(range(max(count - 3, 0), count))


def default_outputs(arch: Arch, wrap: str) -> tuple[int, ...]:
    return default_res_outputs(arch) if wrap == "res" else default_csp_outputs(arch)


def output_count(arch: Arch, wrap: str) -> int:
    """How many outputs the wrap has to choose from: blocks (res) or stem plus stages (csp)."""
    return len(arch.blocks) if wrap == "res" else len(csp_stages(arch)) + 1


def output_ends(arch: Arch, wrap: str) -> list[int]:
    """For each output index, the block whose result it is."""
    if wrap == "res":
        return list(range(len(arch.blocks)))
    return [0] + [group[-1] for group in csp_stages(arch)]


def stem_conv(stem: BlockSpec, focus: bool, image_channels: int = IMAGE_CHANNELS) -> Conv:
    """The stem conv as built: the searched one on the image, or the Focus conv, which reads
    the 4x channels at stride 1 (space-to-depth has taken over the stride) with no groups.

    A searched stem sees either the image (``in == image_channels``) or the Focus output
    (``in == 4 * image_channels``, as in DAMO-YOLO's 12-channel searches); with Focus both
    build the same conv.
    """
    if stem.cls != CONV:
        raise ValueError(f"the stem must be {CONV}")
    if focus:
        if stem.in_channels not in (image_channels, 4 * image_channels):
            raise ValueError(f"a Focus stem needs in={image_channels} or {4 * image_channels}, "
                             f"got {stem.in_channels}")
        return Conv(4 * image_channels, stem.out_channels, stem.kernel)
    if stem.in_channels != image_channels:
        raise ValueError(f"the stem reads {stem.in_channels} channels but images have "
                         f"{image_channels}; use a Focus stem")
    return Conv(stem.in_channels, stem.out_channels, stem.kernel, stem.stride, stem.groups)


def spp_convs(channels: int) -> tuple[Conv, Conv]:
    """SPPBottleneck(channels, channels): halve, then project the reduced map and its pools."""
    hidden = channels // 2
    return Conv(channels, hidden, 1), Conv(hidden * (SPP_POOLS + 1), channels, 1)


def res_units(spec: BlockSpec) -> tuple[tuple[InnerBlock, int], ...]:
    """The distinct units of a non-stem block in the Res wrap, with repeat counts (a plain
    conv block is one unit without a shortcut)."""
    if spec.cls == CONV:
        conv = Conv(spec.in_channels, spec.out_channels, spec.kernel, spec.stride, spec.groups)
        return ((InnerBlock((conv,), spec.stride, False), 1),)
    first = detector_unit(spec, spec.in_channels, spec.out_channels, spec.stride)
    if spec.depth == 1:
        return ((first, 1),)
    return ((first, 1), (detector_unit(spec, spec.out_channels, spec.out_channels, 1), spec.depth - 1))


def csp_stage_layout(specs: Sequence[BlockSpec], spp: bool) -> CSPStageLayout:
    first, last = specs[0], specs[-1]
    units: list[InnerBlock] = []
    unit_specs: list[BlockSpec] = []
    width = first.out_channels // 2
    for n, spec in enumerate(specs):
        half = spec.out_channels // 2
        # The downsampler already did the leading block's first unit.
        for _ in range(1 if n == 0 else 0, spec.depth):
            units.append(detector_unit(spec, width, half, 1))
            unit_specs.append(spec)
            width = half
    split = bool(units)
    return CSPStageLayout(
        down=Conv(first.in_channels, first.out_channels, 3, first.stride), spp=spp,
        units=tuple(units), unit_specs=tuple(unit_specs),
        split_main=Conv(first.out_channels, first.out_channels // 2, 1) if split else None,
        split_short=Conv(first.out_channels, last.out_channels - width, 1) if split else None,
        merge=Conv(last.out_channels, last.out_channels, 1) if split else None)


# ---------------------------------------------------------------------------- convolutions
def _count(ops: Iterable[tuple[ConvOp, int]]) -> OpCounts:
    total: Counter = Counter()
    for op, n in ops:
        total[op] += n
    return tuple(sorted(total.items()))


@lru_cache(maxsize=1 << 16)
def stem_op_counts(stem: BlockSpec, size: int, focus: bool,
                   image_channels: int = IMAGE_CHANNELS) -> tuple[OpCounts, int]:
    """The stem's convolution at image size ``size``, and the size after it."""
    conv = stem_conv(stem, focus, image_channels)
    seen = conv_out_size(size, 2) if focus else size  # space-to-depth keeps odd edges (ceil)
    return ((conv_op(conv, seen), 1),), conv_out_size(seen, conv.stride)


@lru_cache(maxsize=1 << 16)
def res_block_op_counts(spec: BlockSpec, size: int, spp: bool) -> tuple[OpCounts, int]:
    """A Res-wrap block's convolutions at input ``size`` (``spp``: the SPP follows its first
    unit), and its output size."""
    ops: list[tuple[ConvOp, int]] = []
    for n, (unit, repeat) in enumerate(res_units(spec)):
        convs, out = unit_ops(unit, size)
        ops += [(op, repeat) for op in convs]
        size = out
        if n == 0 and spp:
            ops += [(conv_op(c, size), 1) for c in spp_convs(spec.out_channels)]
    return _count(ops), size


@lru_cache(maxsize=1 << 16)
def csp_stage_op_counts(specs: tuple[BlockSpec, ...], size: int, spp: bool) -> tuple[OpCounts, int]:
    """A CSP stage's convolutions at input ``size``, and its output size."""
    stage = csp_stage_layout(specs, spp)
    ops = [(conv_op(stage.down, size), 1)]
    size = conv_out_size(size, stage.down.stride)
    if spp:
        ops += [(conv_op(c, size), 1) for c in spp_convs(stage.down.out_channels)]
    for unit in stage.units:
        ops += [(op, 1) for op in unit_ops(unit, size)[0]]
    for conv in (stage.split_main, stage.split_short, stage.merge):
        if conv is not None:
            ops.append((conv_op(conv, size), 1))
    return _count(ops), size


# ---------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class BackbonePlan:
    """A wrapped backbone. With an image ``size``: level sizes, the table's view and the ops.

    ``table_arch`` at ``table_size`` is the searched ``Arch`` as the search and a latency
    table price it under TinyNAS's rules (``ops.conv_op_counts``): the stem rewritten as the
    Focus conv runs it (4x channels, stride 1, half the image), nothing else changed. That is
    the view a search budget and ``latency predict`` use.

    ``op_counts`` is what the fused wrapped backbone really runs, and it is a list of ops, not
    an ``Arch``, because no ``Arch`` has these convolutions: the SPP's projection reads four
    concatenated maps and a CSP stage's split convs both read the downsampler's output (neither
    chains channels as blocks do), a K1KXK1 unit at stride 1 with in == out has no projection
    where every first K1KXK1 unit of a block has one, and a K1DWK1 unit at stride 1 whose
    channels change adds a projected shortcut no K1DWK1 block has. (A Res-wrap stride-2 unit
    alone could be written as plain conv blocks.)
    """

    arch: Arch
    wrap: str
    focus: bool
    spp: bool
    image_channels: int
    out_indices: tuple[int, ...]
    levels: tuple[Level, ...]
    size: int | None = None
    table_arch: Arch | None = None
    table_size: int | None = None
    op_counts: OpCounts = ()

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(level.channels for level in self.levels)

    @property
    def strides(self) -> tuple[int, ...]:
        return tuple(level.stride for level in self.levels)


def block_strides(arch: Arch, focus: bool) -> list[int]:
    """Image-to-output stride after each block; a Focus stem always halves the image."""
    strides, total = [], 1
    for i, spec in enumerate(arch.blocks):
        total *= 2 if (i == 0 and focus) else spec.stride
        strides.append(total)
    return strides


def output_strides(arch: Arch, wrap: str, focus: bool, out_indices: Sequence[int]) -> tuple[int, ...]:
    """The input-to-feature stride of each selected backbone output."""
    strides, ends = block_strides(arch, focus), output_ends(arch, wrap)
    return tuple(strides[ends[i]] for i in out_indices)


def check_out_indices(arch: Arch, wrap: str, out_indices: Sequence[int]) -> None:
    count = output_count(arch, wrap)
    for i in out_indices:
        if not 0 <= i < count:
            if wrap == "res":
                raise ValueError(f"out index {i} out of range: the architecture has {count} blocks")
            raise ValueError(f"out index {i} out of range: the CSP wrap has {count} stages")


def table_view(arch: Arch, size: int, focus: bool,
               image_channels: int = IMAGE_CHANNELS) -> tuple[Arch, int]:
    """The searched ``Arch`` and input size a latency table prices for an image of ``size``."""
    if not focus:
        return arch, size
    stem = arch.stem.replace(in_channels=4 * image_channels, stride=1, groups=1)
    return (arch if stem == arch.stem else arch.with_block(0, stem)), conv_out_size(size, 2)


def _sees_half(arch: Arch, focus: bool, image_channels: int) -> bool:
    """The one Focus rule: a stem that reads the Focus output's 4x channels sees half the image,
    any other stem the image itself."""
    return focus and arch.in_channels == 4 * image_channels


def image_size(arch: Arch, resolution: int, focus: bool, image_channels: int = IMAGE_CHANNELS) -> int:
    """The image size at which the searched stem sees ``resolution``."""
    return 2 * resolution if _sees_half(arch, focus, image_channels) else resolution


def searched_size(arch: Arch, image: int, focus: bool, image_channels: int = IMAGE_CHANNELS) -> int:
    """What the searched stem of ``arch`` sees in an ``image`` (the inverse of ``image_size``)."""
    return image // 2 if _sees_half(arch, focus, image_channels) else image


def backbone_parts(arch: Arch, wrap: str, focus: bool, size: int, spp: bool = True,
                   image_channels: int = IMAGE_CHANNELS) -> list[tuple[tuple, OpCounts, list[int]]]:
    """The wrapped backbone at image ``size`` part by part (the stem, then each Res block or
    CSP stage): a hashable key of the part, its convolutions, and the output size of each
    block it covers. Equal keys mean equal convolutions, so a caller may cache by key."""
    key = ("stem", arch.stem, size, focus, image_channels)
    ops, size = stem_op_counts(*key[1:])
    parts = [(key, ops, [size])]
    if wrap == "res":
        spp_block = res_spp_block(arch, spp)
        for i, spec in enumerate(arch.blocks[1:], start=1):
            key = ("res", spec, size, i == spp_block)
            ops, size = res_block_op_counts(*key[1:])
            parts.append((key, ops, [size]))
    else:
        groups = csp_stages(arch)
        for n, group in enumerate(groups):
            key = ("csp", tuple(arch.blocks[i] for i in group), size, spp and n == len(groups) - 1)
            ops, size = csp_stage_op_counts(*key[1:])
            # every block of a stage ends at the stage's size: only the first one strides
            parts.append((key, ops, [size] * len(group)))
    return parts


def backbone_op_counts(arch: Arch, wrap: str, focus: bool, size: int, spp: bool = True,
                       image_channels: int = IMAGE_CHANNELS) -> tuple[OpCounts, list[int]]:
    """Every convolution of the fused wrapped backbone at image ``size``, and each block's
    output size."""
    parts = backbone_parts(arch, wrap, focus, size, spp, image_channels)
    return (_count(op for _, ops, _ in parts for op in ops),
            [out for _, _, sizes in parts for out in sizes])


def plan(arch: Arch, wrap: str = "res", focus: bool = True, out_indices: Sequence[int] | None = None,
         size: int | None = None, spp: bool = True, image_channels: int = IMAGE_CHANNELS) -> BackbonePlan:
    """The plan of ``arch`` in ``wrap`` (``res`` or ``csp``); ``out_indices`` None picks the
    three deepest stages; ``size`` (the image's, square) adds sizes, the table view and ops."""
    if wrap not in WRAPS:
        raise ValueError(f"unknown wrap {wrap!r} (known: {', '.join(WRAPS)})")
    stem_conv(arch.stem, focus, image_channels)
    out_indices = tuple(out_indices) if out_indices is not None else default_outputs(arch, wrap)
    check_out_indices(arch, wrap, out_indices)
    ends = output_ends(arch, wrap)
    strides = output_strides(arch, wrap, focus, out_indices)
    if size is None:
        levels = tuple(Level(i, arch.blocks[ends[i]].out_channels, s) for i, s in zip(out_indices, strides))
        return BackbonePlan(arch, wrap, focus, spp, image_channels, out_indices, levels)
    ops, sizes = backbone_op_counts(arch, wrap, focus, size, spp, image_channels)
    levels = tuple(Level(i, arch.blocks[ends[i]].out_channels, s, sizes[ends[i]])
                   for i, s in zip(out_indices, strides))
    view, view_size = table_view(arch, size, focus, image_channels)
    return BackbonePlan(arch, wrap, focus, spp, image_channels, out_indices, levels, size, view, view_size, ops)

