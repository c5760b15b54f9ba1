"""Feature distillation between a teacher's and a student's neck outputs.

Each student level goes through a 1x1 align conv to the teacher's width; both sides then go
through affine-free BatchNorm, so the loss compares feature *shapes*, not scales, and a CSP
teacher can teach a Res student. Unlike DAMO-YOLO's public code, the align convs and norms
are registered submodules: they are saved in checkpoints, move with ``.to(device)``, switch
with ``.train()/.eval()``, and are synchronised by DistributedDataParallel.

Methods:
  * ``cwd`` channel-wise distillation: per channel, a softmax over H*W;
    ``KL(teacher || student) * tau^2 / (N * C)``, summed over levels.
  * ``mimic``: mean squared error, summed over levels.
  * ``mgd`` masked generative distillation: random spatial masking of the student feature,
    a small generator rebuilds the teacher's feature, squared error summed / N.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError

FEATURE_METHODS = ("cwd", "mimic", "mgd")


def cwd_loss(student: torch.Tensor, teacher: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    n, c, h, w = student.shape
    s = student.reshape(n * c, h * w) / tau
    t = teacher.reshape(n * c, h * w) / tau
    p_t = F.softmax(t, dim=1)
    kl = (p_t * (F.log_softmax(t, dim=1) - F.log_softmax(s, dim=1))).sum()
    return kl * tau * tau / (n * c)


class _Generator(nn.Sequential):
    def __init__(self, channels: int):
        super().__init__(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(channels, channels, 3, padding=1))


class FeatureDistiller(nn.Module):
    def __init__(self, student_channels: Sequence[int], teacher_channels: Sequence[int], method: str = "cwd",
                 tau: float = 1.0, mgd_mask_ratio: float = 0.65, mgd_alpha: float = 2e-5):
        super().__init__()
        if method not in FEATURE_METHODS:
            raise UserError("", "distill.method", f"unknown method {method!r} (known: {', '.join(FEATURE_METHODS)})")
        if len(student_channels) != len(teacher_channels):
            raise UserError("", "teacher", f"teacher has {len(teacher_channels)} feature levels, "
                            f"student {len(student_channels)}")
        self.method, self.tau = method, tau
        self.mgd_mask_ratio, self.mgd_alpha = mgd_mask_ratio, mgd_alpha
        self.align = nn.ModuleList(nn.Conv2d(s, t, 1) for s, t in zip(student_channels, teacher_channels))
        self.student_norm = nn.ModuleList(nn.BatchNorm2d(t, affine=False) for t in teacher_channels)
        self.teacher_norm = nn.ModuleList(nn.BatchNorm2d(t, affine=False) for t in teacher_channels)
        self.generators = nn.ModuleList(_Generator(t) for t in teacher_channels) if method == "mgd" else None

    def forward(self, student_feats: Sequence[torch.Tensor], teacher_feats: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(student_feats) != len(self.align) or len(teacher_feats) != len(self.align):
            raise UserError("", "teacher", f"expected {len(self.align)} feature levels from each model")
        total = student_feats[0].new_zeros(())
        for level, (s, t) in enumerate(zip(student_feats, teacher_feats)):
            if s.shape[0] != t.shape[0] or s.shape[-2:] != t.shape[-2:]:
                raise UserError("", "teacher", f"level {level}: student features {tuple(s.shape[-2:])} and "
                                f"teacher features {tuple(t.shape[-2:])} differ in size; use the same input "
                                "size and strides")
            s = self.student_norm[level](self.align[level](s))
            t = self.teacher_norm[level](t.detach().to(s.dtype))
            total = total + self._level_loss(level, s, t)
        return total

    def _level_loss(self, level: int, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.method == "cwd":
            return cwd_loss(s, t, self.tau)
        if self.method == "mimic":
            return F.mse_loss(s, t)
        n, _, h, w = s.shape
        keep = (torch.rand(n, 1, h, w, device=s.device) >= self.mgd_mask_ratio).to(s.dtype)
        rebuilt = self.generators[level](s * keep)
        return F.mse_loss(rebuilt, t, reduction="sum") / n * self.mgd_alpha
