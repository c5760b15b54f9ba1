"""Heads by name, so a recipe's ``head.type`` can choose one.

Every head is built as ``cls(in_channels, num_classes, reg_max, strides, **options)`` and its
``forward(features)`` gives (class logits ``[N, A, C]``, box regression ``[N, A, 4*(reg_max+1)]``)
as ``outputs.py`` defines them. ``HEADS.options(name)`` lists a head's own keywords.
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from ..head import ZeroHead
from ..registry import PartRegistry
from .base import DenseHead
from .decoupled import DecoupledHead
from .effide import EffiDeHead
from .outputs import DFL, LTRB, YOLOX, HeadOutputs, joint_logit, to_contract, yolox_to_ltrb
from .tood import TOODHead

HEADS = PartRegistry("head", ("in_channels", "num_classes", "reg_max", "strides"), {
    "zero": ZeroHead,
    "decoupled": DecoupledHead,
    "effidehead": EffiDeHead,
    "tood": TOODHead,
})


def create_head(name: str, in_channels: Sequence[int], num_classes: int = 80, reg_max: int = 16,
                strides: Sequence[int] = (8, 16, 32), **options) -> nn.Module:
    return HEADS.create(name, tuple(in_channels), num_classes, reg_max, tuple(strides), **options)


__all__ = ["DFL", "DecoupledHead", "DenseHead", "EffiDeHead", "HEADS", "HeadOutputs", "LTRB", "TOODHead",
           "YOLOX", "create_head", "joint_logit", "to_contract", "yolox_to_ltrb"]
