"""Learning-rate schedule: linear warm-up, then cosine decay to a floor."""

from __future__ import annotations

import math


def learning_rate(iteration: int, total_iters: int, base_lr: float, warmup_iters: int = 0,
                  min_lr_ratio: float = 0.05, warmup_start_ratio: float = 0.0) -> float:
    """The lr at ``iteration`` (0-based) of ``total_iters``.

    Warm-up rises linearly from ``warmup_start_ratio * base_lr`` to ``base_lr``; the cosine
    then falls from ``base_lr`` to ``min_lr_ratio * base_lr`` at the last iteration.
    """
    if warmup_iters > 0 and iteration < warmup_iters:
        start = warmup_start_ratio * base_lr
        return start + (base_lr - start) * iteration / warmup_iters
    floor = min_lr_ratio * base_lr
    span = max(total_iters - warmup_iters, 1)
    progress = min(max(iteration - warmup_iters, 0) / span, 1.0)
    return floor + (base_lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def scaled_lr(lr_per_64: float, batch_size: int) -> float:
    """DAMO-YOLO's linear scaling rule: the recipe's lr is for 64 images per step."""
    return lr_per_64 * batch_size / 64.0


def bias_learning_rate(iteration: int, lr: float, warmup_iters: int, start_lr: float) -> float:
    """The biases' lr: during warm-up it falls linearly from ``start_lr`` to the scheduled
    ``lr`` (a fresh head's biases may move fast while the weights are still held back);
    afterwards, and with ``start_lr`` 0, it is ``lr``."""
    if start_lr <= 0 or warmup_iters <= 0 or iteration >= warmup_iters:
        return lr
    return start_lr + (lr - start_lr) * iteration / warmup_iters
