"""Whole detectors: DAMO-YOLO parity, exact re-parameterisation, every space in both wraps."""

import random

import pytest
import torch

from tinynas.detect import build_detector, load_model_recipe, parse_model_recipe
from tinynas.arch import Arch
from tinynas.detect.decode import decode_boxes
from tinynas.detect.costs import recipe_costs
from tinynas.resources import SPACE_DIR
from tinynas.space import load_space

# Published (COCO, 640x640, deploy form): params, GFLOPs.
PUBLISHED = {"t": (8.5e6, 18.1), "s": (16.3e6, 37.8), "m": (28.2e6, 61.8), "l": (42.1e6, 97.3)}
# What this build gives: fused params and thop multiply-accumulates at 640x640, 80 classes.
PINNED = {"t": (8473911, 9004236800), "s": (16242751, 18808012800),
          "m": (28164063, 30810931200), "l": (42039711, 48558080000)}
SPACES = ("k1kx", "kxkx", "k1kxk1", "k1dwk1")


def randomise_bn(module: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics, so folding them is really tested."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
        if hasattr(m, "scale") and isinstance(m.scale, torch.nn.Parameter):
            m.scale.data.fill_(0.7)


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got - expected).abs().max() / expected.abs().max().clamp(min=1e-12))


def assert_fuse_exact(model: torch.nn.Module, size: int) -> None:
    torch.manual_seed(1)
    randomise_bn(model)
    model.eval()
    images = torch.rand(1, 3, size, size) * 255
    reg_max = model.head.reg_max
    with torch.no_grad():
        cls, reg, points, strides = model.forward_raw(images)
        before = (cls, reg, decode_boxes(reg, points, strides, reg_max))
        model.fuse()
        cls, reg, points, strides = model.forward_raw(images)
        after = (cls, reg, decode_boxes(reg, points, strides, reg_max))
    assert model.is_fused
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    for got, expected in zip(after, before):
        assert relative_error(got, expected) < 1e-4


@pytest.mark.parametrize("name", sorted(PINNED))
def test_presets_match_published_params_and_gflops(name):
    total = recipe_costs(load_model_recipe(f"damoyolo-{name}"), 640)[-1]
    assert (total.params, total.macs) == PINNED[name]
    params, gflops = PUBLISHED[name]
    assert abs(total.params / params - 1) < 0.01
    assert abs(total.flops / 1e9 / gflops - 1) < 0.01


@pytest.mark.parametrize("name", sorted(PINNED))
def test_presets_reparameterise_exactly(name):
    assert_fuse_exact(build_detector(load_model_recipe(f"damoyolo-{name}")), 64)


def space_recipe(arch, wrap):
    # A slim neck keeps the test about the backbone wraps; the presets cover the full neck.
    return parse_model_recipe({"backbone": {"arch": arch.to_dicts(), "wrap": wrap, "act": "silu"},
                               "neck": {"out_channels": [16, 32, 48], "depth": 1 / 3, "act": "silu"},
                               "head": {"num_classes": 4}}, "test")


@pytest.mark.parametrize("wrap", ["res", "csp"])
@pytest.mark.parametrize("space", SPACES)
def test_random_space_archs_reparameterise_exactly(space, wrap):
    arch = load_space(SPACE_DIR / f"{space}.yaml").random_arch(random.Random(7), steps=20)
    assert_fuse_exact(build_detector(space_recipe(arch, wrap)), 64)


def smallest_member(space):
    """Every block at its lower limits: a real member of the space, cheap to run at 640."""
    specs, width = [], space.initial.in_channels
    for ref, lim in zip(space.initial.blocks, space.limits):
        out = max(lim.out[0], width if space.nondecreasing_channels and specs else 0)
        spec = ref.replace(in_channels=width, out_channels=out, kernel=min(lim.kernels))
        if ref.kind.has_bottleneck:
            btn = -(-out * lim.btn_ratio[0] // space.channel_divisor) * space.channel_divisor
            spec = spec.replace(depth=lim.depth[0], bottleneck=int(min(btn, out * lim.btn_ratio[1])))
        specs.append(spec)
        width = out
    arch = Arch(tuple(specs))
    assert space.contains(arch)
    return arch


@pytest.mark.parametrize("wrap", ["res", "csp"])
@pytest.mark.parametrize("space", SPACES)
def test_every_space_builds_and_runs_at_320_and_640(space, wrap):
    space = load_space(SPACE_DIR / f"{space}.yaml")
    # Random members (often far larger) are built and run in the re-parameterisation test.
    model = build_detector(space_recipe(smallest_member(space), wrap)).eval()
    for size in (320, 640):
        with torch.no_grad():
            scores, boxes = model(torch.rand(1, 3, size, size) * 255)
        anchors = sum((size // s) ** 2 for s in (8, 16, 32))
        assert scores.shape == (1, anchors, 4) and boxes.shape == (1, anchors, 4)
        assert torch.isfinite(boxes).all() and ((scores >= 0) & (scores <= 1)).all()
