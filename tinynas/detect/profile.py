"""Params and FLOPs of a detector, split into backbone / neck / head.

FLOPs are 2 x the multiply-accumulates that thop counts, taken on the fused (deploy) form
as DAMO-YOLO reports them; params are counted on that same form unless asked otherwise.
"""

from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import dataclass

import thop
import torch
from torch import nn

from ..deploy.reparam import reparameterize
from .detector import Detector, build_detector
from .recipe import ModelRecipe, check_input_size


@dataclass(frozen=True)
class PartCost:
    name: str
    params: int
    macs: int

    @property
    def flops(self) -> int:
        return 2 * self.macs


def _macs(module: nn.Module, *inputs) -> int:
    # thop adds (and then removes) counters on the module it profiles, so it gets a copy;
    # its stdout chatter about modules without a counting rule is silenced.
    with contextlib.redirect_stdout(io.StringIO()):
        macs, _ = thop.profile(copy.deepcopy(module), inputs=inputs, verbose=False)
    return int(macs)


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def detector_costs(model: Detector, size: int = 640, fused: bool = True) -> list[PartCost]:
    """[backbone, neck, head, total] costs for one ``size x size`` image.

    thop counts from tensor shapes only, so a model built on the ``meta`` device (see
    ``recipe_costs``) gives the same numbers without doing the arithmetic.
    """
    check_input_size(model.recipe, size)
    model = reparameterize(model) if fused else copy.deepcopy(model).eval()
    device = next(model.parameters()).device
    images = torch.zeros(1, 3, size, size, device=device)
    feats = model.backbone(images)
    neck_out = model.neck(feats)
    parts = [
        PartCost("backbone", _params(model.backbone), _macs(model.backbone, images)),
        PartCost("neck", _params(model.neck), _macs(model.neck, feats)),
        PartCost("head", _params(model.head), _macs(model.head, list(neck_out))),
    ]
    parts.append(PartCost("total", sum(p.params for p in parts), sum(p.macs for p in parts)))
    return parts


def recipe_costs(recipe: ModelRecipe, size: int = 640, fused: bool = True) -> list[PartCost]:
    """``detector_costs`` of the detector a recipe describes, counted on the meta device."""
    with torch.device("meta"):
        model = build_detector(recipe)
    return detector_costs(model, size, fused)
