"""A backbone ``nn.Module`` from an ``Arch``."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..arch import Arch
from .blocks import create_block
from .fuse import fuse_model


class Backbone(nn.Module):
    """Runs the blocks in order and returns the outputs of the selected stages.

    ``out_stages`` indexes ``arch.stage_ends()``; by default every stage is returned.
    """

    def __init__(self, arch: Arch, out_stages: Sequence[int] | None = None):
        super().__init__()
        self.arch = arch
        ends = arch.stage_ends()
        stages = range(len(ends)) if out_stages is None else out_stages
        for s in stages:
            if not -len(ends) <= s < len(ends):
                raise ValueError(f"stage {s} out of range: the architecture has {len(ends)} stages")
        self.out_blocks = tuple(ends[s] for s in stages)
        self.blocks = nn.ModuleList(create_block(spec) for spec in arch.blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.out_blocks:
                outputs.append(x)
        return outputs


def build_backbone(arch: Arch, out_stages: Sequence[int] | None = None) -> Backbone:
    return Backbone(arch, out_stages)


def deployed_backbone(arch: Arch) -> nn.Module:
    """The backbone as deployed: BatchNorm folded into every conv, eval mode."""
    return fuse_model(Backbone(arch).eval(), inplace=True)
