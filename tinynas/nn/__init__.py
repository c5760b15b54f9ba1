"""Torch building blocks, built from architecture data only when something must run."""

from .activation import get_activation
from .backbone import Backbone, build_backbone
from .blocks import BLOCK_BUILDERS, ResidualUnit, SuperBlock, create_block, register_block
from .conv_bn_act import ConvBNAct
from .fuse import fuse_model

__all__ = [
    "BLOCK_BUILDERS", "Backbone", "ConvBNAct", "ResidualUnit", "SuperBlock", "build_backbone",
    "create_block", "fuse_model", "get_activation", "register_block",
]
