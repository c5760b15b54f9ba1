"""What the teacher is worth to the student, judged on the training batch alone.

Distilling from a teacher that does not lead the student pulls the student towards a worse
answer (Cho & Hariharan, ICCV 2019: a teacher too far from, or no better than, the student can
hurt it). So the automatic weight is scaled by the teacher's *lead*: how much better the teacher
fits the batch the student is learning from, measured the same way for both models whatever
their heads and losses are (two heterogeneous detectors' own losses are not comparable):

    fit = mean over the batch's ground-truth boxes of
          max over anchors of  score(box's class) x IoU(decoded box, ground truth)

a number in [0, 1] that is 1 only when some anchor finds every object with certainty. The
teacher's relative lead ``(fit_T - fit_S) / fit_T`` over ``margin`` (clipped to [0, 1]) is the
factor: a teacher that leads by ``margin`` or more gets the full weight, one no better than the
student gets none. The factor is smoothed with an exponential moving average of the measurements
(taken when the automatic weight measures its gradients); the training batch is augmented, so a
teacher that has memorised the training images still has to find their objects afresh.

Under DistributedDataParallel the sums behind both fits are all-reduced first, so every rank
holds the same factor.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.distributed as dist

from ..detect.anchors import anchor_points
from ..detect.decode import decode_boxes
from ..detect.nms import box_iou


@torch.no_grad()
def batch_fit_sums(cls_logits: torch.Tensor, reg_logits: torch.Tensor, feature_sizes: Sequence[tuple[int, int]],
                   strides: Sequence[int], reg_max: int, targets: Sequence[dict]) -> torch.Tensor:
    """``[sum of the best score x IoU per ground-truth box, number of boxes]`` of one model's head
    outputs on a batch (``targets``: per image, ``boxes`` xyxy in input pixels and ``labels``)."""
    points, point_strides = anchor_points(feature_sizes, strides, dtype=torch.float32, device=cls_logits.device)
    boxes = decode_boxes(reg_logits.float(), points, point_strides, reg_max)
    scores = cls_logits.float().sigmoid()
    total = torch.zeros(2, dtype=torch.float64, device=cls_logits.device)
    for image, target in enumerate(targets):
        gt_boxes = target["boxes"].to(boxes)
        if gt_boxes.numel() == 0:
            continue
        labels = target["labels"].to(cls_logits.device).long()
        quality = box_iou(boxes[image], gt_boxes) * scores[image][:, labels]  # [anchors, objects]
        total[0] += quality.max(dim=0).values.sum().double()
        total[1] += len(labels)
    return total


class TeacherWorth:
    """The factor on the distillation weight: the teacher's smoothed lead over the student."""

    def __init__(self, margin: float, momentum: float = 0.9):
        self.margin = margin
        self.momentum = momentum
        self.factor_: float = 1.0  # until the first measurement: the weight as without this factor
        self.lead_: float | None = None
        self.fits_: tuple[float, float] = (float("nan"), float("nan"))  # (teacher, student), last measured
        self.measurements_ = 0

    def observe(self, teacher_sums: torch.Tensor, student_sums: torch.Tensor) -> float:
        """One measurement from the two models' ``batch_fit_sums``; returns the smoothed factor."""
        sums = torch.stack([teacher_sums, student_sums]).double()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(sums)
        if float(sums[0, 1]) == 0:  # a batch without objects says nothing about either model
            return self.factor_
        teacher, student = float(sums[0, 0] / sums[0, 1]), float(sums[1, 0] / sums[1, 1])
        lead = (teacher - student) / teacher if teacher > 0 else -1.0
        factor = min(max(lead / self.margin, 0.0), 1.0)
        first = self.lead_ is None
        self.lead_ = lead if first else self.momentum * self.lead_ + (1 - self.momentum) * lead
        self.factor_ = factor if first else self.momentum * self.factor_ + (1 - self.momentum) * factor
        self.fits_ = (teacher, student)
        self.measurements_ += 1
        return self.factor_

    def state_dict(self) -> dict:
        return {"factor": self.factor_, "lead": self.lead_, "fits": list(self.fits_),
                "measurements": self.measurements_}

    def load_state_dict(self, state: dict) -> None:
        self.factor_ = float(state.get("factor", 1.0))
        lead = state.get("lead")
        self.lead_ = None if lead is None else float(lead)
        self.fits_ = tuple(float(v) for v in state.get("fits", (float("nan"), float("nan"))))
        self.measurements_ = int(state.get("measurements", 0))
