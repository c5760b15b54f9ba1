"""Detector FLOPs from torch's FlopCounterMode, checked against thop and against shape arithmetic."""

import contextlib
import copy
import io

import pytest
import thop
import torch
from torch import nn

from conftest import SPACE_NAMES, space_path
from tinynas.nn.point_conv import SubsampledPointConv
from tinynas.nn.reparam import reparameterize
from tinynas.detect import build_detector, load_model_recipe, parse_model_recipe
from tinynas.detect.conv_ops import detector_op_counts
from tinynas.detect.costs import detector_costs, recipe_costs
from tinynas.space import load_space

SIZE = 320


def small_recipe(space_name: str, wrap: str):
    arch = load_space(space_path(space_name)).random_arch(len(space_name) + len(wrap), steps=20)
    return parse_model_recipe({"backbone": {"arch": arch.to_dicts(), "wrap": wrap, "act": "silu"},
                               "neck": {"out_channels": [16, 32, 48], "depth": 1 / 3, "act": "silu"},
                               "head": {"num_classes": 4}}, "test")


def thop_parts(model, size: int, custom_ops=None) -> list[int]:
    """thop's count for backbone, neck and head, each on its own, as tinynas used to report them."""
    images = torch.zeros(1, 3, size, size, device=next(model.parameters()).device)
    with torch.no_grad():
        feats = model.backbone(images)
        neck_out = model.neck(feats)
    # thop prices modules by exact type: the strided 1x1 conv's subsampled form is a Conv2d to it.
    custom_ops = {SubsampledPointConv: thop.vision.basic_hooks.count_convNd, **(custom_ops or {})}
    counts = []
    for part, inputs in ((model.backbone, images), (model.neck, feats), (model.head, list(neck_out))):
        with contextlib.redirect_stdout(io.StringIO()):
            macs, _ = thop.profile(copy.deepcopy(part), inputs=(inputs,), custom_ops=custom_ops, verbose=False)
        counts.append(int(macs))
    return counts


def meta_detector(recipe):
    with torch.device("meta"):
        return build_detector(recipe)


@pytest.mark.parametrize("wrap", ["res", "csp"])
@pytest.mark.parametrize("space_name", SPACE_NAMES)
def test_fused_counts_equal_thop_part_by_part(space_name, wrap):
    recipe = small_recipe(space_name, wrap)
    parts = recipe_costs(recipe, SIZE)
    expected = thop_parts(reparameterize(meta_detector(recipe)), SIZE)
    assert [p.macs for p in parts[:3]] == expected
    assert parts[3].macs == sum(expected) > 0


@pytest.mark.parametrize("wrap", ["res", "csp"])
def test_training_form_leaves_out_only_thops_batchnorm_rule(wrap):
    recipe = small_recipe("k1kx", wrap)
    model = meta_detector(recipe).eval()
    batchnorm_free = thop_parts(model, SIZE, custom_ops={nn.BatchNorm2d: thop.vision.basic_hooks.zero_ops})
    with_batchnorm = thop_parts(model, SIZE)
    parts = recipe_costs(recipe, SIZE, fused=False)
    assert [p.macs for p in parts[:3]] == batchnorm_free
    # The difference is real: thop prices every BatchNorm element at 4 operations.
    assert sum(with_batchnorm) > parts[3].macs


def test_transposed_convs_count_their_real_work_not_thops():
    def per_input_pixel(module, inputs, output):
        # Each input pixel scatters one k x k x (C_out / groups) contribution.
        kernel = module.kernel_size[0] * module.kernel_size[1]
        module.total_ops += inputs[0].numel() * module.out_channels // module.groups * kernel

    recipe = load_model_recipe("yolov6-n")  # Rep-PAN upsamples with 2x2 stride-2 transposed convs
    model = reparameterize(meta_detector(recipe))
    parts = [p.macs for p in recipe_costs(recipe, SIZE)[:3]]
    assert parts == thop_parts(model, SIZE, custom_ops={nn.ConvTranspose2d: per_input_pixel})
    assert sum(thop_parts(model, SIZE)) > sum(parts)


def test_fused_count_is_the_sum_over_the_deployed_convolutions():
    recipe = load_model_recipe("tinynas-n")
    by_hand = 0
    for op, count in detector_op_counts(recipe, SIZE):
        per_output = op.in_channels // op.groups * op.kernel * op.kernel
        by_hand += count * op.out_channels * op.out_height * op.out_width * per_output
    assert recipe_costs(recipe, SIZE)[-1].macs == by_hand


@pytest.mark.parametrize("fused", [True, False])
def test_meta_device_counts_equal_real_tensors(fused):
    recipe = small_recipe("k1dwk1", "csp")
    torch.manual_seed(0)
    real = build_detector(recipe)
    assert detector_costs(real, 64, fused) == recipe_costs(recipe, 64, fused)
    assert real.training and not real.is_fused  # counted on a copy
