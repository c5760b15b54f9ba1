"""Published sizes: YOLOv6-N/S v3.0 (EfficientRep + Rep-PAN with BiC + efficient decoupled head)
and YOLOX-S (CSPDarknet + PAFPN + decoupled head) built from tinynas's modules.

Counted as both projects count (``get_model_info`` in YOLOv6 and YOLOX): thop on the fused
(deploy) model with a 64 x 64 input, scaled by (640 / 64)^2, and GFLOPs = 2 x thop's
multiply-accumulates. 80 classes; within 2% of the README tables.
"""

import math

import pytest
import thop
import torch
from torch import nn

from fuse_helpers import assert_fuses_exactly, randomise
from tinynas.arch import arch_from_dicts
from tinynas.detect.heads import create_head
from tinynas.detect.necks import create_neck
from tinynas.nn.fuse import fuse_model
from tinynas.nn.wrap_csp import CSPBackbone
from tinynas.nn.wrap_efficientrep import YOLOV6_MULTIPLES, YOLOV6_OUT_INDICES, EfficientRepBackbone, yolov6_arch

PROFILE_SIZE, SIZE = 64, 640


class Stack(nn.Module):
    def __init__(self, backbone: nn.Module, neck: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.neck, self.head = backbone, neck, head

    def forward(self, x: torch.Tensor):
        return self.head(self.neck(self.backbone(x)))


def published_count(model: nn.Module) -> tuple[float, float]:
    """(M params, GFLOPs at 640) of the fused model, in YOLOv6's and YOLOX's convention."""
    fused = fuse_model(model.eval())
    macs, params = thop.profile(fused, inputs=(torch.zeros(1, 3, PROFILE_SIZE, PROFILE_SIZE),), verbose=False)
    return params / 1e6, 2 * macs / 1e9 * (SIZE / PROFILE_SIZE) ** 2


def yolov6(variant: str) -> nn.Module:
    backbone = EfficientRepBackbone(yolov6_arch(variant), YOLOV6_OUT_INDICES, focus=False, act="relu")
    # The neck's three outputs: the configs' (128, 256, 512) times the width multiple, rounded up to 8.
    width = YOLOV6_MULTIPLES[variant][1]
    outputs = tuple(math.ceil(c * width / 8) * 8 for c in (128, 256, 512))
    neck = create_neck("reppan", backbone.out_channels, outputs, depth=0.33, act="relu")
    return Stack(backbone, neck, create_head("effidehead", outputs, 80, 0))


def yolox_s() -> nn.Module:
    # CSPDarknet-S as a CSP-wrapped Arch: Focus stem to 32, then stages of 64..512 whose L is
    # the downsampler plus the CSPLayer's 1, 3, 3, 1 bottlenecks (btn = the half width); the
    # wrap's SPP opens the last stage as in YOLOX.
    arch = arch_from_dicts([
        {"class": "conv", "in": 12, "out": 32, "s": 1, "k": 3},
        {"class": "k1kx", "in": 32, "out": 64, "s": 2, "k": 3, "L": 2, "btn": 32},
        {"class": "k1kx", "in": 64, "out": 128, "s": 2, "k": 3, "L": 4, "btn": 64},
        {"class": "k1kx", "in": 128, "out": 256, "s": 2, "k": 3, "L": 4, "btn": 128},
        {"class": "k1kx", "in": 256, "out": 512, "s": 2, "k": 3, "L": 2, "btn": 256},
    ])
    backbone = CSPBackbone(arch, focus=True, spp=True, act="silu", reparam=False)
    widths = backbone.out_channels
    neck = create_neck("pafpn", widths, widths, depth=0.33, act="silu")
    return Stack(backbone, neck, create_head("decoupled", widths, 80, 0, act="silu"))


@pytest.mark.parametrize("name,build,params,gflops", [
    ("yolov6-n", lambda: yolov6("n"), 4.7, 11.4),
    ("yolov6-s", lambda: yolov6("s"), 18.5, 45.3),
    ("yolox-s", yolox_s, 9.0, 26.8),
])
def test_published_params_and_gflops_within_2_percent(name, build, params, gflops):
    torch.manual_seed(0)
    got_params, got_gflops = published_count(build())
    assert abs(got_params / params - 1) <= 0.02, f"{name}: {got_params:.3f}M params"
    assert abs(got_gflops / gflops - 1) <= 0.02, f"{name}: {got_gflops:.2f} GFLOPs"


def test_yolov6_n_fuses_exactly_end_to_end():
    torch.manual_seed(0)
    model = randomise(yolov6("n"))
    assert_fuses_exactly(model, torch.rand(1, 3, 128, 128))


def test_yolov6_n_widths_follow_the_config():
    model = yolov6("n")
    assert model.backbone.out_channels == (32, 64, 128, 256)
    assert model.neck.out_channels == (32, 64, 128)
    assert model.neck.bic and model.neck.repeats == 4
