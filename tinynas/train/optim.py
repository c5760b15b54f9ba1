"""Optimisers: SGD with Nesterov momentum (long runs) or AdamW (short runs), three groups.

Weight decay applies to conv/linear weights only, not to norms or biases. Biases are a group of
their own (``kind: "bias"``) because the warm-up starts them at a higher lr than the rest.
"""

from __future__ import annotations

import torch
from torch import nn

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.SyncBatchNorm, nn.GroupNorm, nn.LayerNorm)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """``[weights (decayed), norm weights and other 1-d params, biases]``, each with a ``kind``."""
    decay, no_decay, biases, seen = [], [], [], set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            if name == "bias":
                biases.append(param)
            elif isinstance(module, _NORMS) or param.ndim <= 1:
                no_decay.append(param)
            else:
                decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay, "kind": "weight"},
            {"params": no_decay, "weight_decay": 0.0, "kind": "norm"},
            {"params": biases, "weight_decay": 0.0, "kind": "bias"}]


def build_optimizer(model: nn.Module, name: str = "sgd", lr: float = 0.01, momentum: float = 0.9,
                    weight_decay: float = 5e-4, grad_masks: dict | None = None) -> torch.optim.Optimizer:
    """``name`` is ``sgd`` (Nesterov, ``momentum``) or ``adamw`` (``momentum`` as beta1); with
    ``grad_masks`` (RepOptimizer's multipliers, ``train/repopt.py``) either one is re-parameterised:
    SGD multiplies those parameters' gradients by them, AdamW their updates.

    ``foreach`` is asked for explicitly: torch picks it only on CUDA, and on the CPU the
    per-tensor loop it replaces costs a detector of ~300 tensors a large share of each step."""
    groups = parameter_groups(model, weight_decay)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True, foreach=True)
    if grad_masks:
        from .repopt import RepOptAdamW, RepOptSGD
        if name == "sgd":
            return RepOptSGD(groups, grad_masks, lr=lr, momentum=momentum, nesterov=True, foreach=True)
        if name == "adamw":
            return RepOptAdamW(groups, grad_masks, lr=lr, betas=(momentum, 0.999), foreach=True)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(momentum, 0.999), foreach=True)
    raise ValueError(f"unknown optimizer {name!r} (known: sgd, adamw)")
