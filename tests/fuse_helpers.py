"""Helpers for tests that check re-parameterisation: norms made non-trivial, fused == unfused."""

import torch
from torch import nn

from tinynas.nn.fuse import fuse_model
from tinynas.nn.repvgg import RepVGGBlock


def randomise(module: nn.Module, seed: int = 0) -> nn.Module:
    """Norm statistics and affines away from their identity values, and predictors that
    start at zero given weights, so fusion and export have something to get wrong."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
        if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            n = m.weight.numel()
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)
        if isinstance(m, nn.Conv2d) and not m.weight.any():
            m.weight.data.copy_(torch.randn(m.weight.shape, generator=g) * 0.05)
    return module.eval()


def assert_fuses_exactly(module: nn.Module, inputs) -> nn.Module:
    """Fuse a copy; no BatchNorm or unmerged RepVGG unit is left and every output is within
    1e-4 of the unfused one (eval mode). Returns the fused copy."""
    with torch.no_grad():
        expected = module(inputs)
        fused = fuse_model(module).eval()
        got = fused(inputs)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert not any(isinstance(m, RepVGGBlock) and not m.is_fused for m in fused.modules())
    for e, f in zip(expected, got):
        assert e.shape == f.shape
        assert (e - f).abs().max().item() <= 1e-4
    return fused
