"""The inference form of a model: every RepConv merged, every BatchNorm folded."""

from __future__ import annotations

from torch import nn

from .fuse import fuse_model


def reparameterize(model: nn.Module, inplace: bool = False) -> nn.Module:
    """A fused copy of ``model`` (or ``model`` itself with ``inplace``) in eval mode.

    Folding uses the BatchNorm running statistics, so the result equals the original in
    eval mode only; that is why it is switched to eval here.
    """
    return fuse_model(model, inplace=inplace).eval()
