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
from ..layout import Conv
from ..plan import csp_stage_layout, csp_stages, plan
# Where readers have always found it (detect/model_recipe.py); the plan owns it now.
from ..plan import default_csp_outputs  # noqa: F401
from .conv_bn_act import ConvBNAct
from .spp import SPPBottleneck
from .wrap_res import SPP_ACT, ResUnit, build_stem

# DAMO-YOLO's CSP transitions (downsampler, split and fuse convs) are built with ReLU
# whatever activation the blocks use; keeping it makes our M/L the published topology.
TRANSITION_ACT = "relu"


class CSPStage(nn.Module):
    """One stage, its convs as ``plan.csp_stage_layout`` lists them."""

    def __init__(self, specs: Sequence[BlockSpec], act: str, reparam: bool, spp: bool):
        super().__init__()
        first, last = specs[0], specs[-1]
        stage = csp_stage_layout(tuple(specs), spp)
        self.in_channels, self.out_channels = first.in_channels, last.out_channels
        self.down = _transition(stage.down)
        self.spp = SPPBottleneck(first.out_channels, first.out_channels, act=SPP_ACT) if spp else None
        units = [ResUnit(spec, unit.in_channels, unit.out_channels, unit.stride, act, reparam)
                 for spec, unit in zip(stage.unit_specs, stage.units)]
        self.units = nn.Sequential(*units)
        if units:
            self.split_main = _transition(stage.split_main)
            self.split_short = _transition(stage.split_short)
            self.merge = _transition(stage.merge)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        if self.spp is not None:
            x = self.spp(x)
        if len(self.units) == 0:
            return x
        main = self.units(self.split_main(x))
        return self.merge(torch.cat((main, self.split_short(x)), dim=1))


def _transition(conv: Conv) -> ConvBNAct:
    return ConvBNAct(conv.in_channels, conv.out_channels, conv.kernel, conv.stride, act=TRANSITION_ACT)


class CSPBackbone(nn.Module):
    """Stem, then one ``CSPStage`` per stage; returns the stages in ``out_indices``."""

    def __init__(self, arch: Arch, out_indices: Sequence[int] | None = None, focus: bool = True,
                 spp: bool = True, act: str = "silu", reparam: bool = True, image_channels: int = 3):
        super().__init__()
        self.arch = arch
        layout = plan(arch, "csp", focus, out_indices, spp=spp, image_channels=image_channels)
        groups = csp_stages(arch)
        self.out_indices = layout.out_indices
        stages: list[nn.Module] = [build_stem(arch.stem, focus, image_channels, act)]
        for n, group in enumerate(groups):
            stages.append(CSPStage([arch.blocks[i] for i in group], act, reparam,
                                   spp=spp and n == len(groups) - 1))
        self.stages = nn.ModuleList(stages)
        self.out_channels = layout.channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outputs.append(x)
        return outputs
