"""A detector assembled from a ``ModelRecipe``: wrapped backbone -> neck -> head.

The wrap (res, csp, efficientrep), the neck type and the head type are the recipe's
(``detect/necks``, ``detect/heads``); by default DAMO-YOLO's RepGFPN neck and ZeroHead.
"""

from __future__ import annotations

import torch
from torch import nn

from ..nn.conv_bn_act import ConvBNAct
from ..nn.fuse import fuse_model
from ..nn.wrap_csp import CSPBackbone
from ..nn.wrap_efficientrep import EfficientRepBackbone
from ..nn.wrap_res import ResBackbone
from .anchors import anchor_points
from .decode import decode_boxes
from .heads import HEADS, create_head
from .necks import NECKS, create_neck
from .part_config import part_options
from .model_recipe import IMAGE_CHANNELS, ModelRecipe

BACKBONE_WRAPS = {"res": ResBackbone, "csp": CSPBackbone, "efficientrep": EfficientRepBackbone}


def build_backbone(recipe: ModelRecipe) -> nn.Module:
    b = recipe.backbone
    # Only the efficientrep wrap has the keyword (the recipe refuses csp_stack for the others).
    stacked = {"csp_stack": b.csp_stack} if b.wrap == "efficientrep" else {}
    return BACKBONE_WRAPS[b.wrap](b.arch, b.out_indices, focus=b.focus, spp=b.spp, act=b.act,
                                  reparam=b.reparam, image_channels=IMAGE_CHANNELS, **stacked)


def build_neck(recipe: ModelRecipe, in_channels) -> nn.Module:
    n = recipe.neck
    return create_neck(n.type, in_channels, n.out_channels, **part_options(n, NECKS))


def build_head(recipe: ModelRecipe) -> nn.Module:
    h = recipe.head
    return create_head(h.type, recipe.neck.out_channels, h.num_classes, h.reg_max, h.strides,
                       **part_options(h, HEADS))


class Detector(nn.Module):
    """``forward(images)`` -> (scores ``[N, A, C]`` in 0..1, boxes ``[N, A, 4]`` xyxy pixels).

    ``forward_raw`` gives what a trainer needs instead: class and box logits with the
    anchor points and strides they belong to. Both behave the same in train and eval mode.
    """

    def __init__(self, recipe: ModelRecipe):
        super().__init__()
        self.recipe = recipe
        self.backbone = build_backbone(recipe)
        self.neck = build_neck(recipe, self.backbone.out_channels)
        self.head = build_head(recipe)

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def features(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The three neck outputs (what feature distillation compares)."""
        return tuple(self.neck(self.backbone(images)))

    def forward_raw(self, images: torch.Tensor):
        """(class logits, box logits, anchor points ``[A, 2]``, anchor strides ``[A]``)."""
        feats = self.features(images)
        cls_logits, reg_logits = self.head(feats)
        points, strides = anchor_points([f.shape[-2:] for f in feats], self.head.strides,
                                        dtype=reg_logits.dtype, device=reg_logits.device)
        return cls_logits, reg_logits, points, strides

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cls_logits, reg_logits, points, strides = self.forward_raw(images)
        return cls_logits.sigmoid(), decode_boxes(reg_logits, points, strides, self.head.reg_max)

    @property
    def is_fused(self) -> bool:
        """True once ``fuse()`` has run (a BatchNorm folded or a RepConv merged)."""
        return any(getattr(m, "is_fused", False) or (isinstance(m, ConvBNAct) and m.bn is None)
                   for m in self.modules() if m is not self)

    def fuse(self) -> "Detector":
        """Re-parameterise in place: every RepConv to one conv, every BatchNorm folded."""
        fuse_model(self, inplace=True)
        return self


def build_detector(recipe: ModelRecipe) -> Detector:
    return Detector(recipe)
