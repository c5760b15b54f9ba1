"""Distillation: feature losses between heterogeneous teacher and student, their weight schedule
and automatic weight, YOLOv6-style self-distillation on the head's outputs, and the term that
hands them to the trainer as an extra loss (``distillation_term``)."""

from .auto_weight import AutoDistillWeight
from .feature_loss import FEATURE_METHODS, FeatureDistiller
from .logit_loss import self_distillation_loss
from .schedule import distill_weight
from .term import DistillationTerm, distillation_term

__all__ = ["AutoDistillWeight", "DistillationTerm", "FEATURE_METHODS", "FeatureDistiller", "distill_weight",
           "distillation_term", "self_distillation_loss"]
