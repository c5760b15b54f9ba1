"""Params and FLOPs of a detector, split into backbone / neck / head.

FLOPs are 2 x the multiply-accumulates of the convolutions and matrix products, as torch's
own ``FlopCounterMode`` counts them, taken on the fused (deploy) form as DAMO-YOLO reports
them; params are counted on that same form unless asked otherwise. Bias adds, BatchNorm,
activations, pooling, upsampling and concatenation are not counted, which is the one
definition of a MAC that ``tinynas.costs`` uses for backbones. Against thop (the counter
behind the published DAMO-YOLO, YOLOv6 and YOLOX figures): equal on every fused detector
without transposed convolutions; thop counts a transposed conv once per *output* pixel,
stride^2 times its real work (4x for YOLOv6's 2x2 stride-2 upsamplers), and in the training
form it adds 4 operations per BatchNorm element.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..nn.reparam import reparameterize
from .detector import Detector, build_detector
from .model_recipe import ModelRecipe, check_input_size


@dataclass(frozen=True)
class PartCost:
    name: str
    params: int
    macs: int

    @property
    def flops(self) -> int:
        return 2 * self.macs


def _run_counted(module: nn.Module, *inputs):
    """``module(*inputs)`` and the multiply-accumulates it took."""
    with FlopCounterMode(display=False) as counter:
        outputs = module(*inputs)
    # FlopCounterMode reports 2 FLOPs per multiply-accumulate for every op it knows.
    return outputs, counter.get_total_flops() // 2


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def detector_costs(model: Detector, size: int = 640, fused: bool = True) -> list[PartCost]:
    """[backbone, neck, head, total] costs for one ``size x size`` image.

    The counter reads tensor shapes only, so a model built on the ``meta`` device (see
    ``recipe_costs``) gives the same numbers without doing the arithmetic.
    """
    check_input_size(model.recipe, size)
    # Both forms work on a copy, so the caller's model keeps its weights and training flag.
    model = reparameterize(model) if fused else copy.deepcopy(model).eval()
    device = next(model.parameters()).device
    images = torch.zeros(1, 3, size, size, device=device)
    feats, backbone_macs = _run_counted(model.backbone, images)
    neck_out, neck_macs = _run_counted(model.neck, feats)
    _, head_macs = _run_counted(model.head, list(neck_out))
    parts = [
        PartCost("backbone", _params(model.backbone), backbone_macs),
        PartCost("neck", _params(model.neck), neck_macs),
        PartCost("head", _params(model.head), head_macs),
    ]
    parts.append(PartCost("total", sum(p.params for p in parts), sum(p.macs for p in parts)))
    return parts


def recipe_costs(recipe: ModelRecipe, size: int = 640, fused: bool = True) -> list[PartCost]:
    """``detector_costs`` of the detector a recipe describes, counted on the meta device."""
    with torch.device("meta"):
        model = build_detector(recipe)
    return detector_costs(model, size, fused)
