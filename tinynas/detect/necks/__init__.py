"""Necks by name, so a recipe's ``neck.type`` can choose one.

Every neck is built as ``cls(in_channels, out_channels, **options)``: ``in_channels`` are
the backbone levels finest first (three, /8 /16 /32; ``reppan`` also takes four, the
finest /4), ``out_channels`` the three output widths, finest first; outputs are always
three maps at /8, /16, /32. Options are each class's own keywords (``NECKS.options(name)``);
``depth`` scales that neck's published depth and ``act`` names its activation in every neck.
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from ..neck import GiraffeNeckV2
from ..registry import PartRegistry
from .asff import ASFFNeck, SimpleASFFNeck
from .gsconv import GSConvNeck
from .pafpn import PAFPN
from .reppan import RepPANNeck

NECKS = PartRegistry("neck", ("in_channels", "out_channels"), {
    "giraffe": GiraffeNeckV2,
    "pafpn": PAFPN,
    "reppan": RepPANNeck,
    "asff": ASFFNeck,
    "asff_sim": SimpleASFFNeck,
    "gsconv": GSConvNeck,
})


def create_neck(name: str, in_channels: Sequence[int], out_channels: Sequence[int], **options) -> nn.Module:
    return NECKS.create(name, tuple(in_channels), tuple(out_channels), **options)


__all__ = ["ASFFNeck", "GSConvNeck", "NECKS", "PAFPN", "RepPANNeck", "SimpleASFFNeck", "create_neck"]
