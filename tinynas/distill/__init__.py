"""Distillation: feature losses between heterogeneous teacher and student, their weight schedule
and automatic weight, and YOLOv6-style self-distillation on the head's outputs."""

from .auto_weight import AutoDistillWeight
from .feature_loss import FEATURE_METHODS, FeatureDistiller
from .logit_loss import self_distillation_loss
from .schedule import distill_weight

__all__ = ["AutoDistillWeight", "FEATURE_METHODS", "FeatureDistiller", "distill_weight", "self_distillation_loss"]
