"""YOLOv6's EfficientRep wrap of a searched ``Arch``: RepVGG stages.

Stages are grouped as in the CSP wrap (a new stage at every stride-2 block). A stage is a
stride-2 RepVGG unit standing in for its first block's first unit, then the remaining
units of its blocks: a RepBlock of RepVGG units (YOLOv6-N/S), or with ``csp_stack`` one
CSPStackRep over them (YOLOv6-M/L). A unit is one k x k RepVGG conv whatever the block's
class, and ``btn`` is not used: the Arch supplies widths, unit counts and kernels. The
closed-form costs of ``tinynas.costs`` therefore describe the search-time form, not this
one. ``spp`` ends the last stage with a CSP-SPPF, where YOLOv6 puts it.

``yolov6_arch`` writes YOLOv6 v3.0's own EfficientRep as an Arch, so YOLOv6-N/S are this
wrap with ``focus=False`` and four outputs (P2 feeds the Rep-PAN's BiC merges).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ..arch import CONV, K1KX, Arch, BlockSpec
from .cspstackrep import CSPStackRep
from .repvgg import rep_block, rep_unit
from .sppf import CSPSPPF
from .wrap_csp import csp_stages, default_csp_outputs
from .wrap_res import build_stem


class EfficientRepStage(nn.Module):
    def __init__(self, specs: Sequence[BlockSpec], act: str, reparam: bool, csp_stack: bool, spp: bool):
        super().__init__()
        first, last = specs[0], specs[-1]
        self.in_channels, self.out_channels = first.in_channels, last.out_channels
        self.down = rep_unit(first.in_channels, first.out_channels, first.kernel, first.stride, act, reparam)
        units = sum(spec.depth for spec in specs) - 1
        body: nn.Module = nn.Identity()
        if csp_stack and units:
            body = CSPStackRep(first.out_channels, last.out_channels, units, act=act, reparam=reparam)
        elif units:
            body = self._rep_blocks(specs, act, reparam)
        self.body = body
        self.spp = CSPSPPF(last.out_channels, last.out_channels, 5, act=act) if spp else None

    @staticmethod
    def _rep_blocks(specs: Sequence[BlockSpec], act: str, reparam: bool) -> nn.Sequential:
        # The downsampler already did the first block's first unit; each block's remaining
        # units form one RepBlock at that block's width and kernel.
        blocks, width = [], specs[0].out_channels
        for n, spec in enumerate(specs):
            count = spec.depth - (1 if n == 0 else 0)
            if count:
                blocks.append(rep_block(width, spec.out_channels, count, spec.kernel, act, reparam))
                width = spec.out_channels
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(self.down(x))
        return self.spp(x) if self.spp is not None else x


def _stem(stem: BlockSpec, focus: bool, image_channels: int, act: str, reparam: bool) -> nn.Module:
    if focus:
        return build_stem(stem, True, image_channels, act)
    if stem.cls != CONV:
        raise ValueError(f"the stem must be {CONV}")
    if stem.in_channels != image_channels:
        raise ValueError(f"the stem reads {stem.in_channels} channels but images have "
                         f"{image_channels}; use a Focus stem")
    return rep_unit(stem.in_channels, stem.out_channels, stem.kernel, stem.stride, act, reparam)


class EfficientRepBackbone(nn.Module):
    """Stem (a RepVGG unit, or Focus), then one ``EfficientRepStage`` per stage; returns the
    stages in ``out_indices`` (0 is the stem)."""

    def __init__(self, arch: Arch, out_indices: Sequence[int] | None = None, focus: bool = True,
                 spp: bool = True, act: str = "relu", reparam: bool = True, image_channels: int = 3,
                 csp_stack: bool = False):
        super().__init__()
        self.arch = arch
        groups = csp_stages(arch)
        self.out_indices = tuple(out_indices) if out_indices is not None else default_csp_outputs(arch)
        for i in self.out_indices:
            if not 0 <= i <= len(groups):
                raise ValueError(f"out index {i} out of range: the EfficientRep wrap has {len(groups) + 1} stages")
        stages: list[nn.Module] = [_stem(arch.stem, focus, image_channels, act, reparam)]
        for n, group in enumerate(groups):
            stages.append(EfficientRepStage([arch.blocks[i] for i in group], act, reparam, csp_stack,
                                            spp=spp and n == len(groups) - 1))
        self.stages = nn.ModuleList(stages)
        ends = [0] + [g[-1] for g in groups]
        self.out_channels = tuple(arch.blocks[ends[i]].out_channels for i in self.out_indices)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stage_outputs = []
        for stage in self.stages:
            x = stage(x)
            stage_outputs.append(x)
        return [stage_outputs[i] for i in self.out_indices]


# YOLOv6 v3.0 (configs/yolov6{n,s}.py): base widths and RepVGG repeats of the stem and the
# four stages, scaled by (depth, width) multiples.
YOLOV6_WIDTHS = (64, 128, 256, 512, 1024)
YOLOV6_REPEATS = (1, 6, 12, 18, 6)
YOLOV6_MULTIPLES = {"n": (0.33, 0.25), "s": (0.33, 0.50)}
YOLOV6_OUT_INDICES = (1, 2, 3, 4)


def _scaled_width(width: int, multiple: float) -> int:
    return math.ceil(width * multiple / 8) * 8


def yolov6_arch(variant: str) -> Arch:
    """YOLOv6 v3.0's EfficientRep for ``variant`` ('n' or 's') as an Arch for this wrap.

    Each stage is one block whose ``L`` is its downsampling unit plus its RepBlock's units;
    the class is K1KX only because a block with depth needs one (this wrap ignores it).
    """
    depth, width = YOLOV6_MULTIPLES[variant]
    widths = [_scaled_width(c, width) for c in YOLOV6_WIDTHS]
    repeats = [max(round(r * depth), 1) if r > 1 else r for r in YOLOV6_REPEATS]
    blocks = [BlockSpec(CONV, 3, widths[0], 2, 3)]
    for i in range(1, len(widths)):
        blocks.append(BlockSpec(K1KX, widths[i - 1], widths[i], 2, 3, depth=1 + repeats[i],
                                bottleneck=widths[i]))
    return Arch(tuple(blocks))
