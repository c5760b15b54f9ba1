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

from ..arch import CONV, K1DWK1, K1KX, K1KXK1, KXKX, Arch, BlockSpec
from .activation import get_activation
from .conv_bn_act import ConvBNAct
from .focus import Focus
from .repconv import RepConv
from .spp import SPPBottleneck

# DAMO-YOLO builds its SPP with the library default activation whatever the backbone's is.
SPP_ACT = "silu"


def _strided_conv(cin: int, cout: int, kernel: int, stride: int, groups: int, act: str | None,
                  reparam: bool) -> nn.Module:
    if reparam:
        return RepConv(cin, cout, kernel, stride, groups, act=act)
    return ConvBNAct(cin, cout, kernel, stride, groups, act=act)


class ResUnit(nn.Module):
    """One residual unit of a detector backbone (any block class), built from its spec.

    ``cin``/``cout``/``stride`` are the unit's own: the first unit of a block maps
    ``in -> out`` with the block's stride, later units map ``out -> out`` at stride 1.
    """

    def __init__(self, spec: BlockSpec, cin: int, cout: int, stride: int, act: str,
                 reparam: bool):
        super().__init__()
        btn, k, g = spec.bottleneck, spec.kernel, spec.groups
        if spec.cls == K1KX:
            layers = [ConvBNAct(cin, btn, 1, act=act),
                      _strided_conv(btn, cout, k, stride, g, None, reparam)]
        elif spec.cls == KXKX:
            layers = [ConvBNAct(cin, btn, k, 1, g, act=act),
                      _strided_conv(btn, cout, k, stride, g, None, reparam)]
        elif spec.cls in (K1KXK1, K1DWK1):
            mid_groups = btn if spec.cls == K1DWK1 else g
            layers = [ConvBNAct(cin, btn, 1, act=act),
                      _strided_conv(btn, btn, k, stride, mid_groups, act, reparam),
                      ConvBNAct(btn, cout, 1, act=None)]
        else:
            raise ValueError(f"{spec.cls} has no residual unit")
        self.path = nn.Sequential(*layers)
        self.residual = stride == 1
        self.proj = ConvBNAct(cin, cout, 1, act=None) if self.residual and cin != cout else None
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
    """The stem conv, or a Focus stem that takes over its stride.

    A searched stem sees either the image (``in == image_channels``) or the Focus output
    (``in == 4 * image_channels``, as in DAMO-YOLO's 12-channel searches); both build the
    same Focus module, whose conv always reads the 4x channels.
    """
    if stem.cls != CONV:
        raise ValueError(f"the stem must be {CONV}")
    if focus:
        if stem.in_channels not in (image_channels, 4 * image_channels):
            raise ValueError(f"a Focus stem needs in={image_channels} or {4 * image_channels}, "
                             f"got {stem.in_channels}")
        return Focus(image_channels, stem.out_channels, stem.kernel, act=act)
    if stem.in_channels != image_channels:
        raise ValueError(f"the stem reads {stem.in_channels} channels but images have "
                         f"{image_channels}; use a Focus stem")
    return ConvBNAct(stem.in_channels, stem.out_channels, stem.kernel, stem.stride, stem.groups, act=act)


def last_stage_start(arch: Arch) -> int:
    """Index of the first block of the last stage (the last stride-2 block, else block 1)."""
    strided = [i for i, b in enumerate(arch.blocks) if i > 0 and b.stride == 2]
    return strided[-1] if strided else min(1, len(arch.blocks) - 1)


def default_res_outputs(arch: Arch) -> tuple[int, ...]:
    """The last block of each of the three deepest stages (DAMO-YOLO's (2, 4, 5) for T/S)."""
    return tuple(arch.stage_ends()[-3:])


class ResBackbone(nn.Module):
    """Blocks in order; returns the outputs of the blocks in ``out_indices`` (0 is the stem)."""

    def __init__(self, arch: Arch, out_indices: Sequence[int] | None = None, focus: bool = True,
                 spp: bool = True, act: str = "relu", reparam: bool = True, image_channels: int = 3):
        super().__init__()
        self.arch = arch
        self.out_indices = tuple(out_indices) if out_indices is not None else default_res_outputs(arch)
        for i in self.out_indices:
            if not 0 <= i < len(arch.blocks):
                raise ValueError(f"out index {i} out of range: the architecture has {len(arch.blocks)} blocks")
        blocks: list[nn.Module] = [build_stem(arch.stem, focus, image_channels, act)]
        spp_block = last_stage_start(arch) if spp and len(arch.blocks) > 1 else None
        for i, spec in enumerate(arch.blocks[1:], start=1):
            units: list[nn.Module] = list(block_units(spec, act, reparam))
            if i == spp_block:
                units.insert(1, SPPBottleneck(spec.out_channels, spec.out_channels, act=SPP_ACT))
            blocks.append(nn.Sequential(*units))
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = tuple(arch.blocks[i].out_channels for i in self.out_indices)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.out_indices:
                outputs.append(x)
        return outputs
