"""The convolutions a deployed detector runs, as latency-table ops.

A latency table prices ``ConvOp`` values; a whole detector is its backbone's, neck's and
head's convolutions in the fused (deploy) form: RepConvs merged, BatchNorm folded. They are
read off the real module tree rather than restated in closed form, so the neck and head
types of any recipe are covered: the detector is built on torch's ``meta`` device (shapes
only, nothing allocated), fused, and run once with a hook on every ``Conv2d`` recording its
input size. The last conv of a residual backbone unit is marked ``fused_residual``: the table
times it with the add, as the deployed graph runs it. Elementwise work between convs
(upsampling, concatenation, the SPP pools, decoding) is not a table op; ``tinynas latency
validate --models`` measures how much of a detector the convolutions explain.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn

from ..ops import DEPTHWISE, REGULAR, ConvOp
from ..nn.fuse import fuse_model
from .detector import Detector, build_backbone, build_head, build_neck
from .model_recipe import IMAGE_CHANNELS, ModelRecipe, check_input_size


def _traced_op_counts(model: nn.Module, run) -> list[tuple[ConvOp, int]]:
    """Every ``Conv2d`` call of ``run()`` on ``model`` (fused, on the meta device), counted."""
    from ..nn.wrap_res import ResUnit

    residual_ends = set()
    for module in model.modules():
        if isinstance(module, ResUnit) and module.residual:
            convs = [m for m in module.path.modules() if isinstance(m, nn.Conv2d)]
            residual_ends.add(id(convs[-1]))
    seen: Counter = Counter()

    def record(module: nn.Conv2d, inputs, output) -> None:
        _, cin, height, width = inputs[0].shape
        depthwise = module.groups == cin == module.out_channels and cin > 1
        seen[ConvOp(DEPTHWISE if depthwise else REGULAR, cin, module.out_channels, module.kernel_size[0],
                    module.stride[0], height, width, id(module) in residual_ends,
                    module.groups)] += 1

    hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            run()
    finally:
        for hook in hooks:
            hook.remove()
    return sorted(seen.items())


def detector_op_counts(recipe: ModelRecipe, size: int, batch: int = 1) -> list[tuple[ConvOp, int]]:
    """Every convolution of the fused detector at ``size x size``, with how often it runs."""
    check_input_size(recipe, size)
    with torch.device("meta"):
        model = Detector(recipe)
    model.fuse()
    model.eval()
    images = torch.empty(batch, IMAGE_CHANNELS, size, size, device="meta")
    return _traced_op_counts(model, lambda: model.head(model.features(images)))


def traced_backbone_op_counts(recipe: ModelRecipe, size: int) -> list[tuple[ConvOp, int]]:
    """The convolutions of the recipe's fused wrapped backbone alone, traced like
    ``detector_op_counts`` (what ``tinynas.plan`` states in closed form)."""
    with torch.device("meta"):
        backbone = fuse_model(build_backbone(recipe), inplace=True)
    backbone.eval()
    images = torch.empty(1, IMAGE_CHANNELS, size, size, device="meta")
    return _traced_op_counts(backbone, lambda: backbone(images))


def traced_neck_head_op_counts(recipe: ModelRecipe, channels, sizes, batch: int = 1) -> list[tuple[ConvOp, int]]:
    """The fused neck's and head's convolutions for backbone levels of ``channels`` at square
    ``sizes``, traced: any neck and head type (``tinynas.neck_plan`` states the default ones
    in closed form)."""
    with torch.device("meta"):
        neck, head = build_neck(recipe, list(channels)), build_head(recipe)
        parts = fuse_model(nn.ModuleList([neck, head]), inplace=True)
    parts.eval()
    feats = [torch.empty(batch, c, s, s, device="meta") for c, s in zip(channels, sizes)]
    return _traced_op_counts(parts, lambda: head(neck(feats)))
