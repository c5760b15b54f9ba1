"""``distill.loss_weight: auto``: the distillation weight set from the two losses' gradients.

A hand-set weight does not carry across models and methods (at weight 1, on a tiny student's
first batch, CWD's gradient on the neck was ~33x the detection loss's, mimic's ~28x, and
logit's on the head outputs ~4x). Instead
of the weight this fixes the *ratio* of the two gradients on the tensors both losses see (the
student's neck outputs for feature methods, the head outputs for head methods):

    scale = grad_ratio * |d detection / d shared| / |d distillation / d shared|

The ratio is measured with ``torch.autograd.grad`` on those activations (no parameter gradients,
so it costs about one backward pass through the head), at every iteration for the first
``warmup_iters`` and every ``every`` iterations after, and smoothed as an exponential moving
average of its logarithm (a ratio that doubles and one that halves move it equally). The
schedule in ``schedule.py`` multiplies the scale, so the cosine decay stays on top.

Under DistributedDataParallel each rank measures its own batch; the squared norms are summed
over ranks before the ratio is taken, so every rank holds the same scale.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.distributed as dist


class AutoDistillWeight:
    """Keeps the distillation weight at ``grad_ratio`` times the detection gradient's size."""

    def __init__(self, grad_ratio: float, momentum: float = 0.9, warmup_iters: int = 20, every: int = 10):
        self.grad_ratio = grad_ratio
        self.momentum = momentum
        self.warmup_iters = warmup_iters
        self.every = every
        self.log_scale_: float | None = None
        self.measurements_ = 0

    @property
    def scale_(self) -> float:
        """The weight before the schedule; 0 until a gradient has been measured."""
        return 0.0 if self.log_scale_ is None else math.exp(self.log_scale_)

    def due(self, iteration: int) -> bool:
        # A function of the global iteration only, so all ranks (and a resumed run) agree.
        return iteration < self.warmup_iters or iteration % self.every == 0

    def update(self, iteration: int, detection_loss: torch.Tensor, distill_loss: torch.Tensor,
               shared: Sequence[torch.Tensor], loss_scale: float = 1.0) -> float:
        """Measure (when due) and return the current scale.

        ``loss_scale`` is AMP's GradScaler scale: with it, and with the distillation loss at its
        current weight, both gradients have the size they have in the real backward pass, which
        the GradScaler keeps inside half precision's range (unscaled, detection gradients on the
        neck are ~1e-8 and vanish in fp16). Neither factor changes the ratio.
        """
        if self.due(iteration):
            weight = self.scale_ if self.log_scale_ is not None else 1.0
            squares = torch.stack([_grad_square(detection_loss * loss_scale, shared),
                                   _grad_square(distill_loss * (loss_scale * weight), shared)])
            if dist.is_available() and dist.is_initialized():
                dist.all_reduce(squares)
            det, dis = (float(v) for v in squares.sqrt())
            dis /= weight
            if math.isfinite(det) and math.isfinite(dis) and det > 0 and dis > 0:
                self._observe(math.log(self.grad_ratio * det / dis))
        return self.scale_

    def _observe(self, log_scale: float) -> None:
        if self.log_scale_ is None:
            self.log_scale_ = log_scale
        else:
            self.log_scale_ = self.momentum * self.log_scale_ + (1.0 - self.momentum) * log_scale
        self.measurements_ += 1

    def state_dict(self) -> dict:
        return {"log_scale": self.log_scale_, "measurements": self.measurements_}

    def load_state_dict(self, state: dict) -> None:
        log_scale = state.get("log_scale")
        self.log_scale_ = None if log_scale is None else float(log_scale)
        self.measurements_ = int(state.get("measurements", 0))


def _grad_square(loss: torch.Tensor, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Squared L2 norm of d loss / d tensors, in fp32 (0 when the loss does not depend on them)."""
    tensors = list(tensors)
    total = torch.zeros((), dtype=torch.float32, device=tensors[0].device)
    if not loss.requires_grad:
        return total
    grads = torch.autograd.grad(loss, tensors, retain_graph=True, allow_unused=True)
    for g in grads:
        if g is not None:
            total = total + g.detach().float().pow(2).sum()
    return total
