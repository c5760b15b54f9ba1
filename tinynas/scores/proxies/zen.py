"""The Zen score: how much the pre-pooling feature map moves under a small input perturbation,
with the BatchNorm scale each layer removed put back.

As ZenNAS's compute_zen_score does it, per repeat: every conv and linear weight redrawn N(0, 1)
(one draw per tensor, in module order; biases 0, BatchNorm weight 1 and bias 0, running
statistics kept), an input x ~ N(0, 1) and a perturbation e ~ N(0, 1); in train mode,
delta = mean over the batch of sum |f(x) - f(x + gamma * e)| for the feature map f, and the score
is log(delta) + sum over BatchNorms of log(sqrt(mean running_var)) read after the two passes. The
repeats are averaged. Draws come from ``generator`` in that order, so a seed fixes the score.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .saliency import train_copy

Features = Callable[[nn.Module, torch.Tensor], torch.Tensor]  # (network, input) -> feature map before pooling


def gaussian_init(net: nn.Module, generator: torch.Generator) -> None:
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.normal_(0.0, 1.0, generator=generator)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)) and m.affine:
                m.weight.fill_(1.0)
                m.bias.zero_()


def zen_score(net: nn.Module, features: Features, batch: int, resolution: int, in_channels: int = 3,
              mixup_gamma: float = 1e-2, repeat: int = 1, seed: int = 0) -> float:
    """The mean Zen score of ``repeat`` draws; ``features(net, x)`` is the map the network pools."""
    clone = train_copy(net)
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, in_channels, resolution, resolution)
    scores = []
    with torch.no_grad():
        for _ in range(repeat):
            gaussian_init(clone, generator)
            x = torch.randn(shape, generator=generator)
            noise = torch.randn(shape, generator=generator)
            moved = features(clone, x) - features(clone, x + mixup_gamma * noise)
            delta = moved.abs().sum(dim=tuple(range(1, moved.dim()))).mean()
            scale = sum(math.log(math.sqrt(float(m.running_var.mean())))
                        for m in clone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))
            scores.append(math.log(float(delta)) + scale)
    return sum(scores) / len(scores)
