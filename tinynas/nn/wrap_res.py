"""DAMO-YOLO's residual wrap (TinyNAS_res) of a searched ``Arch``: the detector form.

It differs from the search-time form in ``blocks.py`` the way DAMO-YOLO's backbone does:
the k x k conv that carries the stride can be a ``RepConv``; a stride-2 unit has no
shortcut at all (no pooled residual); a stride-1 unit whose channels change adds a 1x1
projection; KXKX puts the stride on its second conv. An SPP bottleneck can follow the
first unit of the last stage, and a Focus stem can replace the stem's stride.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..arch import CONV, Arch, BlockSpec
from ..layout import Conv, detector_unit
from ..plan import plan, res_spp_block, stem_conv
# Where readers have always found them (detect/model_recipe.py); the plan owns them now.
from ..plan import default_res_outputs, last_stage_start  # noqa: F401
from .activation import get_activation
from .conv_bn_act import ConvBNAct
from .focus import Focus
from .repconv import RepConv
from .spp import SPPBottleneck

# DAMO-YOLO builds its SPP with the library default activation whatever the backbone's is.
SPP_ACT = "silu"


def _conv_module(conv: Conv, act: str | None, rep: bool) -> nn.Module:
    cls = RepConv if rep else ConvBNAct
    return cls(conv.in_channels, conv.out_channels, conv.kernel, conv.stride, conv.groups, act=act)


class ResUnit(nn.Module):
    """One residual unit of a detector backbone (any block class), built from its spec.

    ``cin``/``cout``/``stride`` are the unit's own: the first unit of a block maps
    ``in -> out`` with the block's stride, later units map ``out -> out`` at stride 1.
    Its convs and shortcut are ``layout.detector_unit``'s; the k x k conv that carries the
    stride is a RepConv when ``reparam``, and the last conv's activation waits for the add.
    """

    def __init__(self, spec: BlockSpec, cin: int, cout: int, stride: int, act: str,
                 reparam: bool):
        super().__init__()
        unit = detector_unit(spec, cin, cout, stride)
        last = len(unit.convs) - 1
        self.path = nn.Sequential(*(_conv_module(conv, None if i == last else act, reparam and i == 1)
                                    for i, conv in enumerate(unit.convs)))
        self.residual = unit.residual
        self.proj = _conv_module(unit.projection, None, False) if unit.projection is not None else None
        self.act = get_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.path(x)
        if self.residual:
            out = out + (self.proj(x) if self.proj is not None else x)
        return self.act(out)


def block_units(spec: BlockSpec, act: str, reparam: bool) -> list[nn.Module]:
    """The ``L`` units of a block: the first carries stride and channel change."""
    if spec.cls == CONV:
        return [ConvBNAct(spec.in_channels, spec.out_channels, spec.kernel, spec.stride,
                          spec.groups, act=act)]
    units: list[nn.Module] = [ResUnit(spec, spec.in_channels, spec.out_channels, spec.stride, act, reparam)]
    units += [ResUnit(spec, spec.out_channels, spec.out_channels, 1, act, reparam)
              for _ in range(spec.depth - 1)]
    return units


def build_stem(stem: BlockSpec, focus: bool, image_channels: int, act: str) -> nn.Module:
    """The stem conv, or a Focus stem that takes over its stride (``plan.stem_conv``)."""
    conv = stem_conv(stem, focus, image_channels)
    if focus:
        return Focus(image_channels, conv.out_channels, conv.kernel, act=act)
    return _conv_module(conv, act, False)


class ResBackbone(nn.Module):
    """Blocks in order; returns the outputs of the blocks in ``out_indices`` (0 is the stem)."""

    def __init__(self, arch: Arch, out_indices: Sequence[int] | None = None, focus: bool = True,
                 spp: bool = True, act: str = "relu", reparam: bool = True, image_channels: int = 3):
        super().__init__()
        self.arch = arch
        layout = plan(arch, "res", focus, out_indices, spp=spp, image_channels=image_channels)
        self.out_indices = layout.out_indices
        blocks: list[nn.Module] = [build_stem(arch.stem, focus, image_channels, act)]
        spp_block = res_spp_block(arch, spp)
        for i, spec in enumerate(arch.blocks[1:], start=1):
            units: list[nn.Module] = list(block_units(spec, act, reparam))
            if i == spp_block:
                units.insert(1, SPPBottleneck(spec.out_channels, spec.out_channels, act=SPP_ACT))
            blocks.append(nn.Sequential(*units))
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = layout.channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.out_indices:
                outputs.append(x)
        return outputs
