"""The closed-form MAE score (TinyNAS v2 "madnas"): no torch, float64.

A conv with N(0,1) weights and fan-in n multiplies a unit-variance input's std by sqrt(n),
so an inner block's log-std is the sum of 0.5 * log(fan-in) over its plain conv path
(BN, activation and residual ignored).
"""

from __future__ import annotations

import math
from functools import lru_cache

from ..arch import Arch, BlockSpec
from ..layout import block_layout
from .base import DEFAULT_STAGE_WEIGHTS, StageScore
from .registry import register_scorer


@lru_cache(maxsize=1 << 16)
def block_log_std(spec: BlockSpec) -> float:
    total = 0.0
    for inner, repeat in block_layout(spec):
        inner_log = 0.0
        for conv in inner.convs:
            inner_log += 0.5 * math.log((conv.in_channels // conv.groups) * conv.kernel * conv.kernel)
        total += repeat * inner_log
    return total


@register_scorer("madnas")
class MadnasScore(StageScore):
    def __init__(self, weights=DEFAULT_STAGE_WEIGHTS, resolution: int | None = None):
        # The closed form does not depend on the input size; it is accepted so every
        # scorer takes the same options.
        super().__init__(weights)
        self.resolution = resolution

    def block_logs(self, arch: Arch) -> list[float]:
        return [block_log_std(b) for b in arch.blocks]
