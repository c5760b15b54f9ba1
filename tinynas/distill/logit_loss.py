"""Distillation on the head's outputs: YOLOv6's self-distillation, and the same loss for any
teacher with the same head geometry.

The student's class scores learn the teacher's (binary KL per class, since scores are
independent sigmoids) and its DFL box distributions learn the teacher's (KL over the
reg_max+1 bins of each side), both softened by a temperature.

Where to compare: the teacher's box distribution at an anchor where it sees nothing is noise,
so each anchor's box term is weighted by the teacher's confidence there (its highest class
probability) — YOLOv6 restricts it to the assigned positives instead, which needs the labels.
Both terms are normalised by the teacher's total confidence, the soft count of objects'
anchors, as the detection losses are normalised by the count of positives; normalising by
all anchors instead would shrink the signal with the background area.
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
    confidence = teacher_cls.sigmoid().max(dim=-1).values  # [N, A]
    norm = confidence.sum().clamp(min=1.0)
    cls_kl = _binary_kl(student_cls, teacher_cls, tau).sum() / norm
    bins = reg_max + 1
    s = F.log_softmax(student_reg.reshape(*student_reg.shape[:2], 4, bins) / tau, dim=-1)
    t = F.log_softmax(teacher_reg.reshape(*teacher_reg.shape[:2], 4, bins) / tau, dim=-1)
    per_anchor = (t.exp() * (t - s)).sum(dim=-1).mean(dim=-1)  # [N, A]: mean KL over the four sides
    box_kl = (per_anchor * confidence).sum() / norm
    return (cls_weight * cls_kl + box_weight * box_kl) * tau * tau
