"""Closed-form costs against what thop counts on the built torch modules."""

import random

import pytest
import thop
import torch
from torch import nn

from conftest import SPACE_NAMES, space_path
from tinynas.costs import arch_costs, block_costs, costs_by_block
from tinynas.nn import build_backbone, fuse_model
from tinynas.ops import conv_op_counts, conv_ops
from tinynas.space import load_space


def _thop(model, x):
    macs, params = thop.profile(model, inputs=(x,), verbose=False)
    return macs, params


def _archs(name, count, seed=0):
    space = load_space(space_path(name))
    rng = random.Random(seed)
    return space, [space.random_arch(rng, steps=25) for _ in range(count)]


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_costs_match_thop_on_random_archs(name):
    torch.manual_seed(0)
    space, archs = _archs(name, 3)
    for arch, resolution in zip(archs, (64, 63, 96)):
        model = build_backbone(arch).eval()
        x = torch.randn(1, arch.in_channels, resolution, resolution)
        costs = arch_costs(arch, resolution)
        _, params = _thop(model, x)
        assert params == costs.params  # BatchNorm weight and bias counted, as built
        fused = fuse_model(model)
        macs, params_fused = _thop(fused, x)
        assert params_fused == costs.params_fused
        # thop also counts the shortcut's average pooling; convolutions dominate.
        assert abs(macs - costs.macs) / costs.macs < 0.01, (arch.key, resolution)
        assert costs.layers == arch.layers()


def test_macs_exact_when_pooling_is_not_counted():
    torch.manual_seed(0)
    _, archs = _archs("k1kx", 2, seed=5)
    ignore = {nn.AvgPool2d: thop.vision.basic_hooks.zero_ops}
    for arch in archs:
        fused = fuse_model(build_backbone(arch).eval())
        macs, _ = thop.profile(fused, inputs=(torch.randn(1, 12, 64, 64),), custom_ops=ignore, verbose=False)
        assert macs == arch_costs(arch, 64).macs


def test_output_size_and_channels_match_the_module():
    _, archs = _archs("k1dwk1", 2, seed=3)
    for arch in archs:
        model = build_backbone(arch).eval()
        with torch.no_grad():
            outs = model(torch.randn(1, 12, 75, 75))
        per_block = costs_by_block(arch, 75)
        for out, end in zip(outs, arch.stage_ends()):
            assert out.shape[1] == arch.blocks[end].out_channels
            assert out.shape[-1] == per_block[end].out_size


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_conv_ops_cover_every_conv_of_the_module(name):
    _, archs = _archs(name, 2, seed=9)
    for arch in archs:
        model = build_backbone(arch)
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        ops = conv_ops(arch, 64)
        assert len(ops) == len(convs)
        assert sorted((o.in_channels, o.out_channels, o.kernel, o.stride, o.groups) for o in ops) == sorted(
            (c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0], c.groups) for c in convs)
        op_macs = sum(n * o.out_channels * (o.in_channels // o.groups) * o.kernel ** 2 * o.out_height * o.out_width
                      for o, n in conv_op_counts(arch, 64))
        assert op_macs == arch_costs(arch, 64).macs


def test_fused_residual_marks_the_last_conv_of_each_residual_unit():
    space, _ = _archs("k1kx", 0)
    ops = conv_ops(space.initial, 320)
    # Stem: plain conv. Each K1KX unit: 1x1 (not fused), kxk (fused), then its projection.
    assert [o.fused_residual for o in ops[:4]] == [False, False, True, False]
    assert ops[0].kind == "regular" and ops[0].height == 320 and ops[1].height == 320
    assert ops[2].stride == 2 and ops[3].height == 160 and ops[3].kernel == 1


def test_depthwise_ops_are_marked():
    space, _ = _archs("k1dwk1", 0)
    kinds = {o.kind for o in conv_ops(space.initial, 320)}
    assert kinds == {"regular", "depthwise"}


def test_block_costs_scale_with_depth():
    space, _ = _archs("k1kx", 0)
    spec = space.initial.blocks[3]
    one = block_costs(spec.replace(depth=1), 80)
    three = block_costs(spec.replace(depth=3), 80)
    repeat = block_costs(spec.replace(in_channels=spec.out_channels, stride=1, depth=1), 40)
    assert three.macs == one.macs + 2 * repeat.macs
    assert three.params == one.params + 2 * repeat.params
    assert three.layers == 3 * one.layers == 6
