"""SynFlow, SNIP and GradNorm: sums over the conv and linear weights of a per-weight saliency.

As zero-cost-nas computes them: only ``nn.Conv2d`` and ``nn.Linear`` weights count (biases and
BatchNorm never), each layer's array is summed and the layer sums added in module order.
SynFlow needs no data: BatchNorm removed, every parameter made positive, float64, one all-ones
image, the sum of all outputs backpropagated, saliency |w * dR/dw|. SNIP (|w * dL/dw|) and
GradNorm (the sum of each layer's gradient norm, not one global norm) take one batch and a loss,
with BatchNorm in train mode (the batch's own statistics).
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

Loss = Callable[[object, object], torch.Tensor]  # (network outputs, targets) -> scalar loss


def weighted_layers(net: nn.Module) -> list[nn.Module]:
    """The layers whose weights the saliency proxies count, in module order."""
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def train_copy(net: nn.Module, batch_norm: bool = True) -> nn.Module:
    """A deep copy in train mode; with ``batch_norm=False`` every BatchNorm is an identity (the
    copy zero-cost-nas makes for SynFlow)."""
    clone = copy.deepcopy(net)
    if not batch_norm:
        for parent in list(clone.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.modules.batchnorm._BatchNorm):
                    setattr(parent, name, nn.Identity())
    return clone.train()


def output_sum(outputs) -> torch.Tensor:
    """The sum of every tensor of a network's output (a tensor, or lists/tuples of them)."""
    if isinstance(outputs, torch.Tensor):
        return outputs.sum()
    return sum(output_sum(o) for o in outputs)


def synflow(net: nn.Module, input_shape: tuple[int, ...]) -> float:
    """SynFlow of ``net`` for inputs of ``input_shape`` (C, H, W), with no data."""
    clone = train_copy(net, batch_norm=False).double()
    with torch.no_grad():
        for value in clone.state_dict().values():
            value.abs_()
    clone.zero_grad()
    output_sum(clone(torch.ones(1, *input_shape, dtype=torch.float64))).backward()
    return _layer_sum(clone, lambda w: (w * w.grad).abs().sum())


def _backward_on_batch(net: nn.Module, images: torch.Tensor, targets, loss: Loss) -> nn.Module:
    clone = train_copy(net)
    clone.zero_grad()
    loss(clone(images), targets).backward()
    return clone


def snip(net: nn.Module, images: torch.Tensor, targets, loss: Loss) -> float:
    """SNIP: the connection sensitivities |w * dL/dw| of one batch, summed."""
    clone = _backward_on_batch(net, images, targets, loss)
    return _layer_sum(clone, lambda w: (w.grad * w).abs().sum())


def grad_norm(net: nn.Module, images: torch.Tensor, targets, loss: Loss) -> float:
    """GradNorm: the L2 norms of each layer's weight gradient on one batch, summed."""
    clone = _backward_on_batch(net, images, targets, loss)
    return _layer_sum(clone, lambda w: w.grad.norm())


def _layer_sum(net: nn.Module, per_layer: Callable[[torch.Tensor], torch.Tensor]) -> float:
    total = 0.0
    with torch.no_grad():
        for layer in weighted_layers(net):
            if layer.weight.grad is not None:  # a layer the output does not reach saves nothing
                total = total + per_layer(layer.weight)
    return float(total)
