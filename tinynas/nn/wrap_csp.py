"""DAMO-YOLO's CSP wrap (TinyNAS_csp) of a searched ``Arch``: the detector form for M/L.

A stage is a stride-2 block plus the stride-1 blocks that follow it (DAMO-YOLO merges its
blocks 3 and 4 this way). Each stage: a 3x3 stride-2 downsampler that stands in for the
leading block's first unit, an optional SPP, then a split: one 1x1 conv feeds the
remaining residual units at half width, another 1x1 conv is the shortcut half; both are
concatenated and fused by a 1x1 conv.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..arch import Arch, BlockSpec
from .conv_bn_act import ConvBNAct
from .spp import SPPBottleneck
from .wrap_res import SPP_ACT, ResUnit, build_stem

# DAMO-YOLO's CSP transitions (downsampler, split and fuse convs) are built with ReLU
# whatever activation the blocks use; keeping it makes our M/L the published topology.
TRANSITION_ACT = "relu"


def csp_stages(arch: Arch) -> list[tuple[int, ...]]:
    """Block indices of each stage after the stem: a new stage opens at every stride-2 block."""
    stages: list[list[int]] = []
    for i, spec in enumerate(arch.blocks[1:], start=1):
        if spec.stride == 2 or not stages:
            stages.append([i])
        else:
            stages[-1].append(i)
    return [tuple(s) for s in stages]


class CSPStage(nn.Module):
    def __init__(self, specs: Sequence[BlockSpec], act: str, reparam: bool, spp: bool):
        super().__init__()
        first, last = specs[0], specs[-1]
        self.in_channels, self.out_channels = first.in_channels, last.out_channels
        self.down = ConvBNAct(first.in_channels, first.out_channels, 3, first.stride, act=TRANSITION_ACT)
        self.spp = SPPBottleneck(first.out_channels, first.out_channels, act=SPP_ACT) if spp else None
        units: list[nn.Module] = []
        width = first.out_channels // 2
        for n, spec in enumerate(specs):
            half = spec.out_channels // 2
            # The downsampler already did the leading block's first unit.
            for _ in range(1 if n == 0 else 0, spec.depth):
                units.append(ResUnit(spec, width, half, 1, act, reparam))
                width = half
        self.units = nn.Sequential(*units)
        if units:
            self.split_main = ConvBNAct(first.out_channels, first.out_channels // 2, 1, act=TRANSITION_ACT)
            self.split_short = ConvBNAct(first.out_channels, last.out_channels - width, 1, act=TRANSITION_ACT)
            self.merge = ConvBNAct(last.out_channels, last.out_channels, 1, act=TRANSITION_ACT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        if self.spp is not None:
            x = self.spp(x)
        if len(self.units) == 0:
            return x
        main = self.units(self.split_main(x))
        return self.merge(torch.cat((main, self.split_short(x)), dim=1))


def default_csp_outputs(arch: Arch) -> tuple[int, ...]:
    """The three deepest stages (DAMO-YOLO's (2, 3, 4) for M/L); 0 is the stem."""
    count = len(csp_stages(arch)) + 1
    return tuple(range(max(count - 3, 0), count))


class CSPBackbone(nn.Module):
    """Stem, then one ``CSPStage`` per stage; returns the stages in ``out_indices``."""

    def __init__(self, arch: Arch, out_indices: Sequence[int] | None = None, focus: bool = True,
                 spp: bool = True, act: str = "silu", reparam: bool = True, image_channels: int = 3):
        super().__init__()
        self.arch = arch
        groups = csp_stages(arch)
        self.out_indices = tuple(out_indices) if out_indices is not None else default_csp_outputs(arch)
        for i in self.out_indices:
            if not 0 <= i <= len(groups):
                raise ValueError(f"out index {i} out of range: the CSP wrap has {len(groups) + 1} stages")
        stages: list[nn.Module] = [build_stem(arch.stem, focus, image_channels, act)]
        for n, group in enumerate(groups):
            stages.append(CSPStage([arch.blocks[i] for i in group], act, reparam,
                                   spp=spp and n == len(groups) - 1))
        self.stages = nn.ModuleList(stages)
        ends = [0] + [g[-1] for g in groups]
        self.out_channels = tuple(arch.blocks[ends[i]].out_channels for i in self.out_indices)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outputs.append(x)
        return outputs
