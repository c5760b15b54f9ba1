"""How strongly to distil at each iteration.

DAMO-YOLO decays the weight as a cosine from 1.0 to 0.1 over training; the paper instead
switches distillation off for the final no-augmentation epochs. Both are expressible here.
"""

from __future__ import annotations

import math

SHAPES = ("cosine", "linear", "constant")


def distill_weight(iteration: int, total_iters: int, start: float = 1.0, end: float = 0.1,
                   shape: str = "cosine", off_from: int | None = None) -> float:
    """The distillation loss weight at ``iteration`` (0-based) of ``total_iters``.

    ``off_from``: from this iteration on the weight is 0 (e.g. the no-augmentation phase).
    """
    if off_from is not None and iteration >= off_from:
        return 0.0
    progress = min(max(iteration / max(total_iters, 1), 0.0), 1.0)
    if shape == "cosine":
        return start + (end - start) * (1.0 - math.cos(math.pi * progress)) / 2.0
    if shape == "linear":
        return start + (end - start) * progress
    if shape == "constant":
        return start
    raise ValueError(f"unknown distillation weight shape {shape!r} (known: {', '.join(SHAPES)})")
