"""Label assigners by name. Each has ``assign(scores, boxes, points, strides, gt_boxes, gt_labels)``
for one image and returns an ``Assignment``; ``class_target`` reads a positive's class target from
any of them."""

from __future__ import annotations

from ..assigner import AlignOTAAssigner
from ...registry import Registry
from .base import ImageAssigner, Scene, ScoredAssignment, class_target
from .simota import SimOTAAssigner
from .tal import TaskAlignedAssigner

ASSIGNERS: Registry[type] = Registry("assigner", "train.assigner", {
    "alignota": AlignOTAAssigner,
    "simota": SimOTAAssigner,
    "tal": TaskAlignedAssigner,
})


def get_assigner(name: str) -> type:
    """The assigner class registered as ``name`` (recipe field ``train.assigner``)."""
    return ASSIGNERS.lookup(name)


def create_assigner(name: str, **settings):
    """An assigner instance; ``settings`` override its defaults (the papers' values)."""
    return get_assigner(name)(**settings)


__all__ = ["ASSIGNERS", "AlignOTAAssigner", "ImageAssigner", "Scene", "ScoredAssignment", "SimOTAAssigner",
           "TaskAlignedAssigner", "class_target", "create_assigner", "get_assigner"]
