"""Exponential moving average of model weights with DAMO-YOLO's ramp.

The decay ramps as ``decay * (1 - exp(-updates / ramp))`` so early, fast-moving weights are
not averaged with stale ones; buffers (BatchNorm statistics) are averaged the same way.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


class ModelEMA:
    def __init__(self, model: nn.Module, decay: float = 0.9998, ramp: float = 2000.0, updates: int = 0):
        self.module = copy.deepcopy(_unwrap(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.ramp = ramp
        self.updates = updates

    def current_decay(self) -> float:
        return self.decay * (1.0 - math.exp(-self.updates / self.ramp))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.current_decay()
        source = _unwrap(model).state_dict()
        mine, theirs = [], []
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                mine.append(value)
                theirs.append(source[name].detach())
            else:
                value.copy_(source[name])
        # One fused call over all tensors: a Python loop over a detector's ~300 tensors costs
        # a visible share of a small-batch CPU step; the arithmetic is the same.
        torch._foreach_mul_(mine, d)
        torch._foreach_add_(mine, theirs, alpha=1.0 - d)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay, "ramp": self.ramp}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
        self.decay = float(state["decay"])
        self.ramp = float(state["ramp"])


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model
