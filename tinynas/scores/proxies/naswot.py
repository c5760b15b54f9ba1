"""NASWOT: how differently the ReLUs of an untrained network code the images of one batch.

Each ReLU's input is flattened per image and coded as (x > 0); K[i, j] counts the units on which
images i and j agree (c c^T + (1 - c)(1 - c)^T summed over every ReLU), and the score is
log|det K|. A network that separates its inputs well has a K near diagonal and a high score. As
the authors' code: the batch as given, BatchNorm in train mode, every module whose class name
contains "ReLU" (ReLU6 and LeakyReLU too; a functional relu is not seen).
"""

from __future__ import annotations

import torch
from torch import nn

from ...errors import UserError
from .saliency import train_copy


def relu_modules(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if "ReLU" in type(m).__name__]


def naswot(net: nn.Module, images: torch.Tensor) -> float:
    """The NASWOT score of ``net`` on ``images`` [B, C, H, W] (B >= 2)."""
    clone = train_copy(net)
    relus = relu_modules(clone)
    if not relus:
        raise UserError("naswot", "network", "no ReLU module to read codes from (NASWOT needs ReLU activations)")
    batch = images.shape[0]
    kernel = torch.zeros(batch, batch, dtype=torch.float64)

    def add_codes(module, inputs, output):
        # The hook sees the input after an in-place ReLU overwrote it: (relu(x) > 0) == (x > 0).
        code = (inputs[0].detach().reshape(batch, -1) > 0).to(torch.float64)
        kernel.add_(code @ code.T + (1 - code) @ (1 - code).T)

    handles = [m.register_forward_hook(add_codes) for m in relus]
    try:
        with torch.no_grad():
            clone(images)
    finally:
        for handle in handles:
            handle.remove()
    return float(torch.linalg.slogdet(kernel)[1])
