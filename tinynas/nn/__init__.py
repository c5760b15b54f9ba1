"""Torch building blocks, built from architecture data only when something must run."""

from .activation import get_activation
from .backbone import Backbone, build_backbone, deployed_backbone
from .blocks import BLOCK_BUILDERS, ResidualUnit, SuperBlock, create_block, register_block
from .conv_bn_act import ConvBNAct
from .focus import Focus
from .fuse import fuse_model
from .repconv import RepConv
from .spp import SPPBottleneck
from .wrap_csp import CSPBackbone
from .wrap_res import ResBackbone

__all__ = [
    "BLOCK_BUILDERS", "Backbone", "CSPBackbone", "ConvBNAct", "Focus", "RepConv", "ResBackbone",
    "ResidualUnit", "SPPBottleneck", "SuperBlock", "build_backbone", "create_block", "deployed_backbone", "fuse_model",
    "get_activation", "register_block",
]
