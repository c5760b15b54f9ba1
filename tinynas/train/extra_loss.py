"""The one way to add a loss to training: a term the trainer adds to the detection loss.

The trainer knows this protocol and nothing else about what a term computes. Distillation is
such a term (``tinynas/distill/term.py``); a regulariser on the student is another. Per
iteration the trainer calls, in this order:

1. ``loss(step)``: the unweighted term for this batch, or ``None`` to leave it out this
   iteration. A term with trainable modules is computed inside the training forward, right
   after the student's head, so that DistributedDataParallel sees its modules used and
   synchronises their gradients. A term without is computed after the detection loss, outside
   autocast. (Which comes first decides the order in which the two losses' gradients are summed
   on the tensors both reach: these two places keep the numbers of every earlier run.)
2. ``weight(step, loss, detection_loss, loss_scale)`` once both exist; the training loss is
   ``detection_loss + weight * loss``.

The term's unweighted loss is logged as the epoch mean in ``metrics.csv`` under ``name``, the
weight under ``<name>_weight``, and whatever ``logged()`` returns under its own keys. ``state_dict()`` is saved in ``last.pt`` beside the
trainer's own resume state (one entry a key, so its keys must not be the trainer's), and
``load_state_dict`` gets those entries back when a run resumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from ..detect.detector import Detector


@dataclass(frozen=True)
class StepContext:
    """One training iteration as a term sees it.

    The student's tensors are those the losses' graph runs through, so a term may take gradients
    with respect to them: the neck features as the head consumed them, and the head outputs the
    term's own loss is computed from (inside the forward, the head's; after it, those the
    detection loss used, which under DistributedDataParallel are the forward's copies).
    """

    iteration: int  # global and 0-based: epoch * iterations_per_epoch + step
    total_iters: int
    no_aug_from: int  # first iteration of the final epochs without augmentation
    images: torch.Tensor
    neck_features: tuple[torch.Tensor, ...]
    cls_logits: torch.Tensor
    reg_logits: torch.Tensor
    # The batch's ground truth (per image: ``boxes`` xyxy in input pixels, ``labels``); given to
    # ``weight``, not to a ``loss`` computed inside the forward.
    targets: tuple[dict, ...] = ()


class ExtraLoss(Protocol):
    name: str  # the metrics.csv column; ``<name>_weight`` holds the weight

    def attach(self, student: Detector, device: torch.device, amp: bool) -> nn.Module | None:
        """Called once, when the student is built (before the optimiser exists): prepare what the
        term needs and return its trainable modules, which the optimiser then updates with the
        student's and DDP synchronises, or None when it has none."""

    def loss(self, step: StepContext) -> torch.Tensor | None:
        """The unweighted term for this batch, or None to leave it out this iteration (nothing is
        added then, and the logged weight is 0)."""

    def weight(self, step: StepContext, loss: torch.Tensor, detection_loss: torch.Tensor,
               loss_scale: float) -> float:
        """The factor on ``loss``; ``loss_scale`` is AMP's current gradient scale (1 without AMP)."""

    def logged(self) -> dict[str, float]:
        """Values describing the term after this iteration's ``weight`` (e.g. what the weight was
        made of); each one's epoch mean goes to ``metrics.csv`` under its key."""

    def state_dict(self) -> dict:
        """Everything a resumed run needs, the trainable modules' weights included."""

    def load_state_dict(self, state: dict) -> None:
        """Restore from the entries ``state_dict`` returned (absent ones: keep the fresh state)."""
