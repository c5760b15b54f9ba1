"""Whole-model re-parameterisation."""

from __future__ import annotations

import copy

from torch import nn


def fuse_model(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Call ``fuse()`` on every module that has one (children before parents)."""
    if not inplace:
        model = copy.deepcopy(model)
    for module in reversed(list(model.modules())):
        if module is not model and hasattr(module, "fuse") and callable(module.fuse):
            module.fuse()
    return model
