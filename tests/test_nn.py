"""Search-time torch modules: BN folding is exact and stage outputs follow the spec."""

import random

import pytest
import torch
from torch import nn

from conftest import SPACE_NAMES, space_path
from tinynas.nn import ConvBNAct, build_backbone, fuse_model
from tinynas.space import load_space


def _randomise_bn(model):
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.5)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=gen) * 0.1)


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_fused_backbone_matches_unfused(name):
    torch.manual_seed(0)
    space = load_space(space_path(name))
    arch = space.random_arch(random.Random(5), steps=15)
    model = build_backbone(arch).eval()
    _randomise_bn(model)
    fused = fuse_model(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # original untouched
    x = torch.randn(2, arch.in_channels, 48, 48)
    with torch.no_grad():
        for a, b in zip(model(x), fused(x)):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * a.abs().max().item())


def test_fuse_is_idempotent():
    block = ConvBNAct(8, 16, 3, 2).eval()
    _randomise_bn(block)
    x = torch.randn(1, 8, 9, 9)
    with torch.no_grad():
        ref = block(x)
        block.fuse()
        once = block(x)
        block.fuse()
        assert torch.equal(once, block(x))
    assert torch.allclose(ref, once, atol=1e-5)


def test_backbone_returns_selected_stages():
    space = load_space(space_path("k1kx"))
    model = build_backbone(space.initial, out_stages=[2, 3, 4]).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 12, 64, 64))
    assert [o.shape[1] for o in outs] == [96, 192, 384]
    assert [o.shape[-1] for o in outs] == [16, 8, 4]
    with pytest.raises(ValueError, match="stage 7 out of range"):
        build_backbone(space.initial, out_stages=[7])
