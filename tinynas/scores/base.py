"""What MAE-style scores share: stage sums of log-std terms and stage weights.

Each inner block (the stem counts as one) contributes the log of its output std for a
unit-variance input. A stage's score is the sum of those logs from the network's start to
the block closing the stage, plus the log of that block's out channels; the network score
is the weighted sum over stages.
"""

from __future__ import annotations

import math
from typing import Sequence

from ..arch import Arch
from ..errors import UserError

# The MAE-DET paper's weights; DAMO-YOLO's search configs use (0, 0, 1, 1, 16).
DEFAULT_STAGE_WEIGHTS = (0.0, 0.0, 1.0, 1.0, 6.0)


def parse_weights(text: str | Sequence[float], source: str = "", field: str = "weights") -> tuple[float, ...]:
    """Accept ``"0,0,1,1,6"`` or a sequence of numbers; reject anything non-finite."""
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        weights = tuple(float(w) for w in items)
    except (TypeError, ValueError):
        raise UserError(source, field, f"stage weights must be numbers, got {text!r}") from None
    if not weights or not all(math.isfinite(w) for w in weights):
        raise UserError(source, field, f"stage weights must be finite numbers, got {text!r}")
    return weights


def stage_totals(arch: Arch, block_logs: Sequence[float]) -> list[float]:
    """Unweighted stage scores from per-block log-std sums (one entry per block)."""
    ends = arch.stage_ends()
    totals = []
    running = 0.0
    start = 0
    for end in ends:
        for i in range(start, end + 1):
            running += block_logs[i]
        start = end + 1
        totals.append(running + math.log(arch.blocks[end].out_channels))
    return totals


class StageScore:
    """Base of stage-weighted scores: subclasses give ``block_logs(arch)``."""

    name = "stage"

    def __init__(self, weights: Sequence[float] = DEFAULT_STAGE_WEIGHTS):
        self.weights = weights

    def block_logs(self, arch: Arch) -> list[float]:
        raise NotImplementedError

    def stage_scores(self, arch: Arch) -> list[float]:
        return stage_totals(arch, self.block_logs(arch))

    def weighted(self, arch: Arch, stages: Sequence[float]) -> float:
        weights = self.weights
        if len(weights) != len(stages):
            raise UserError("", "weights", f"{len(weights)} stage weights given but the "
                            f"architecture has {len(stages)} stages")
        return float(sum(w * s for w, s in zip(weights, stages)))

    def __call__(self, arch: Arch) -> float:
        return self.weighted(arch, self.stage_scores(arch))
