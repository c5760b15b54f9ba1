"""What the decoupled heads share: the keyword contract, flattening, and the mapping to
(class logits, box regression).

A head is built as ``cls(in_channels, num_classes, reg_max, strides, **options)`` like
``ZeroHead``. ``forward`` gives the contract of ``outputs.py``; ``forward_native`` gives the
head's own predictions (objectness apart, boxes in its own coding) for a loss written for
them. With ``reg_max > 0`` every head predicts DFL logits; with ``reg_max == 0`` it predicts
its family's direct form (``direct_coding``).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .outputs import DFL, HeadOutputs, to_contract


def prior_bias(prior_prob: float) -> float:
    """The logit of ``prior_prob``: early class scores start near it, keeping focal losses stable."""
    return -math.log((1 - prior_prob) / prior_prob)


class DenseHead(nn.Module):
    direct_coding: str = ""
    has_objectness: bool = False

    def __init__(self, in_channels: Sequence[int], num_classes: int, reg_max: int, strides: Sequence[int]):
        super().__init__()
        if len(in_channels) != len(strides):
            raise ValueError(f"{len(in_channels)} input levels but {len(strides)} strides")
        if reg_max < 0:
            raise ValueError(f"reg_max must be 0 (direct boxes) or more (DFL bins), got {reg_max}")
        self.in_channels, self.strides = tuple(in_channels), tuple(strides)
        self.num_classes, self.reg_max = num_classes, reg_max

    @property
    def box_channels(self) -> int:
        return 4 * (self.reg_max + 1)

    @property
    def box_coding(self) -> str:
        return DFL if self.reg_max > 0 else self.direct_coding

    def level(self, index: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Class, box and objectness maps (``[N, K, H, W]``; objectness ``None`` if absent) of one level."""
        raise NotImplementedError

    def forward_native(self, features: Sequence[torch.Tensor]) -> HeadOutputs:
        cls_out, box_out, obj_out = [], [], []
        for i, x in enumerate(features):
            cls, box, obj = self.level(i, x)
            cls_out.append(cls.flatten(2).transpose(1, 2))
            box_out.append(box.flatten(2).transpose(1, 2))
            if obj is not None:
                obj_out.append(obj.flatten(2).transpose(1, 2))
        return HeadOutputs(torch.cat(cls_out, 1), torch.cat(box_out, 1), self.box_coding,
                           torch.cat(obj_out, 1) if obj_out else None)

    def to_contract(self, outputs: HeadOutputs) -> tuple[torch.Tensor, torch.Tensor]:
        return to_contract(outputs)

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits ``[N, A, C]`` and box regression ``[N, A, 4*(reg_max+1)]`` (see outputs.py)."""
        return self.to_contract(self.forward_native(features))
