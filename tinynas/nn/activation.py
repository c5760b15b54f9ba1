"""Activation modules by name."""

from __future__ import annotations

from torch import nn

_ACTIVATIONS = {
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
    "silu": lambda: nn.SiLU(inplace=True),
    "swish": lambda: nn.SiLU(inplace=True),
    "leakyrelu": lambda: nn.LeakyReLU(0.1, inplace=True),
    "hardswish": lambda: nn.Hardswish(inplace=True),
    "gelu": lambda: nn.GELU(),
    "identity": lambda: nn.Identity(),
}


def get_activation(name: str | None) -> nn.Module:
    """A new activation module; ``None`` means ReLU, TinyNAS's default."""
    key = (name or "relu").lower()
    if key not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}")
    return _ACTIVATIONS[key]()
