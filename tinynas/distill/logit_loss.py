"""YOLOv6-style self-distillation on the head's outputs.

The teacher is a trained copy of the student's architecture. The student's class scores
learn the teacher's (binary KL per class, since scores are independent sigmoids), and its
DFL box distributions learn the teacher's (KL over the reg_max+1 bins of each side), both
softened by a temperature.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _binary_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float) -> torch.Tensor:
    p_t = torch.sigmoid(teacher_logits / tau)
    log_s = F.logsigmoid(student_logits / tau)
    log_not_s = F.logsigmoid(-student_logits / tau)
    log_t = F.logsigmoid(teacher_logits / tau)
    log_not_t = F.logsigmoid(-teacher_logits / tau)
    return p_t * (log_t - log_s) + (1 - p_t) * (log_not_t - log_not_s)


def self_distillation_loss(student_cls: torch.Tensor, student_reg: torch.Tensor, teacher_cls: torch.Tensor,
                           teacher_reg: torch.Tensor, reg_max: int, tau: float = 1.0,
                           cls_weight: float = 1.0, box_weight: float = 1.0) -> torch.Tensor:
    """Logits ``[N, A, C]`` and ``[N, A, 4*(reg_max+1)]`` from student and teacher -> a scalar."""
    teacher_cls, teacher_reg = teacher_cls.detach(), teacher_reg.detach()
    anchors = student_cls.shape[0] * student_cls.shape[1]
    cls_kl = _binary_kl(student_cls, teacher_cls, tau).sum() / anchors
    bins = reg_max + 1
    s = F.log_softmax(student_reg.reshape(-1, bins) / tau, dim=-1)
    t = F.log_softmax(teacher_reg.reshape(-1, bins) / tau, dim=-1)
    box_kl = F.kl_div(s, t, log_target=True, reduction="sum") / (4 * anchors)
    return (cls_weight * cls_kl + box_weight * box_kl) * tau * tau
