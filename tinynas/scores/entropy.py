"""The forward-pass MAE score (TinyNAS v1 "entropy").

Every conv gets N(0,1) weights, BN and activations are skipped, the input is N(0,1) of
shape [batch, C, R, R]; after each inner block the output is divided by its own std and
the logs of those stds add up per block. Stage sums and weights are the closed form's;
the score is the mean over ``repeats`` draws.
"""

from __future__ import annotations

import math

from ..arch import Arch
from ..layout import block_layout
from ..errors import UserError
from ..memory import arch_forward_bytes, check_fits
from .base import DEFAULT_STAGE_WEIGHTS, StageScore
from .registry import register_scorer


@register_scorer("entropy")
class EntropyScore(StageScore):
    def __init__(self, weights=DEFAULT_STAGE_WEIGHTS, resolution: int = 320, batch: int = 8,
                 repeats: int = 1, seed: int = 0):
        super().__init__(weights)
        self.resolution = resolution
        self.batch = batch
        self.repeats = repeats
        self.seed = seed

    def _block_logs_once(self, arch: Arch, generator) -> list[float]:
        import torch
        import torch.nn.functional as F

        x = torch.randn(self.batch, arch.in_channels, self.resolution, self.resolution,
                        generator=generator)
        logs = []
        for spec in arch.blocks:
            block_log = 0.0
            for inner, repeat in block_layout(spec):
                for _ in range(repeat):
                    for conv in inner.convs:
                        weight = torch.randn(conv.out_channels, conv.in_channels // conv.groups,
                                             conv.kernel, conv.kernel, generator=generator)
                        x = F.conv2d(x, weight, stride=conv.stride, padding=conv.kernel // 2,
                                     groups=conv.groups)
                    std = float(x.std())
                    block_log += math.log(std)
                    x = x / std
            logs.append(block_log)
        return logs

    def block_logs(self, arch: Arch) -> list[float]:
        import torch

        for name in ("batch", "resolution", "repeats"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise UserError("", name, f"must be a positive integer, got {value!r}")
        # A search scores many architectures in turn; each is checked, since one wide
        # candidate at a large batch x resolution is enough to exhaust memory.
        check_fits(arch_forward_bytes(arch, self.batch, self.resolution), "", "batch x resolution",
                   f"the entropy forward pass at batch {self.batch}, {self.resolution}x{self.resolution}",
                   "lower the batch or the resolution")
        generator = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            draws = [self._block_logs_once(arch, generator) for _ in range(self.repeats)]
        return [sum(column) / len(column) for column in zip(*draws)]
