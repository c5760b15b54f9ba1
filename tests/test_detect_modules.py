"""Detector building blocks: RepConv, Focus, anchors, DFL decoding, NMS, letterbox, recipes."""

import numpy as np
import pytest
import torch

from tinynas.detect import (anchor_points, box_iou, decode_boxes, dfl_integral, multiclass_nms, nms,
                            parse_model_recipe)
from tinynas.detect.neck import GiraffeNeckV2
from tinynas.errors import UserError
from tinynas.nn.focus import space_to_depth
from tinynas.nn.repconv import RepConv

TINY_ARCH = [
    {"class": "ConvKXBNRELU", "in": 3, "out": 8, "s": 1, "k": 3},
    {"class": "SuperResK1KX", "in": 8, "out": 16, "s": 2, "k": 3, "L": 1, "btn": 8},
    {"class": "SuperResK1KX", "in": 16, "out": 16, "s": 2, "k": 3, "L": 1, "btn": 8},
    {"class": "SuperResK1KX", "in": 16, "out": 24, "s": 2, "k": 3, "L": 1, "btn": 16},
    {"class": "SuperResK1KX", "in": 24, "out": 32, "s": 2, "k": 3, "L": 1, "btn": 16},
]

def randomise_bn(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)

@pytest.mark.parametrize("kernel,stride,groups", [(3, 1, 1), (3, 2, 1), (5, 1, 4), (5, 2, 8)])
def test_repconv_fuse_is_exact_and_idempotent(kernel, stride, groups):
    torch.manual_seed(0)
    conv = RepConv(8, 16, kernel, stride, groups, act="relu")
    randomise_bn(conv)
    conv.eval()
    x = torch.randn(2, 8, 13, 11)
    expected = conv(x)
    conv.fuse()
    assert conv.is_fused and conv.dense is None and conv.point is None
    torch.testing.assert_close(conv(x), expected, rtol=1e-5, atol=1e-5)
    weight = conv.conv.weight.clone()
    conv.fuse()
    assert torch.equal(conv.conv.weight, weight)

def test_repconv_fused_constructor_loads_fused_weights():
    conv = RepConv(4, 6, 3, act=None)
    randomise_bn(conv)
    conv.eval().fuse()
    deploy = RepConv(4, 6, 3, act=None, fused=True)
    deploy.load_state_dict(conv.state_dict())
    x = torch.randn(1, 4, 7, 7)
    torch.testing.assert_close(deploy(x), conv(x))

def test_space_to_depth_keeps_every_pixel_once():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    y = space_to_depth(x)
    assert y.shape == (2, 12, 2, 3)
    assert torch.equal(y.flatten().sort().values, x.flatten().sort().values)
    assert torch.equal(y[:, :3], x[..., ::2, ::2])
    assert torch.equal(y[:, 3:6], x[..., 1::2, ::2])

def test_neck_keeps_levels_and_gives_requested_channels():
    neck = GiraffeNeckV2([16, 24, 32], [8, 16, 24], depth=1 / 3, hidden_ratio=0.5, act="silu").eval()
    feats = [torch.randn(1, 16, 16, 16), torch.randn(1, 24, 8, 8), torch.randn(1, 32, 4, 4)]
    outs = neck(feats)
    assert [tuple(o.shape) for o in outs] == [(1, 8, 16, 16), (1, 16, 8, 8), (1, 24, 4, 4)]
    assert all(len(stage.blocks) == 1 for stage in (neck.node3, neck.node6))

def test_anchor_points_row_major_per_level():
    points, strides = anchor_points([(2, 3), (1, 2)], [8, 16])
    assert points.tolist() == [[0, 0], [8, 0], [16, 0], [0, 8], [8, 8], [16, 8], [0, 0], [16, 0]]
    assert strides.tolist() == [8] * 6 + [16] * 2

def test_dfl_decoding_recovers_a_known_box():
    reg_max = 16
    # One-hot-ish logits at bins 2, 3, 4, 5 (left, top, right, bottom).
    logits = torch.full((1, 1, 4, reg_max + 1), -50.0)
    for side, b in enumerate([2, 3, 4, 5]):
        logits[0, 0, side, b] = 50.0
    logits = logits.reshape(1, 1, -1)
    assert torch.allclose(dfl_integral(logits, reg_max), torch.tensor([[[2.0, 3.0, 4.0, 5.0]]]))
    boxes = decode_boxes(logits, torch.tensor([[80.0, 40.0]]), torch.tensor([8.0]), reg_max)
    assert torch.allclose(boxes, torch.tensor([[[64.0, 16.0, 112.0, 80.0]]]))
    # A two-bin split is the expectation, not the arg-max.
    soft = torch.full((1, 4, reg_max + 1), -50.0)
    soft[:, :, 3] = soft[:, :, 4] = 0.0
    assert torch.allclose(dfl_integral(soft.reshape(1, -1), reg_max), torch.full((1, 4), 3.5))

def brute_force_nms(boxes, scores, threshold):
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    keep = []
    for i in order:
        if all(float(box_iou(boxes[i:i + 1], boxes[j:j + 1])) <= threshold for j in keep):
            keep.append(i)
    return keep

def test_nms_matches_the_greedy_definition():
    g = torch.Generator().manual_seed(3)
    xy = torch.rand(60, 2, generator=g) * 50
    wh = torch.rand(60, 2, generator=g) * 30 + 5
    boxes = torch.cat([xy, xy + wh], 1)
    scores = torch.rand(60, generator=g)
    for threshold in (0.3, 0.5, 0.7):
        assert nms(boxes, scores, threshold).tolist() == brute_force_nms(boxes, scores, threshold)

def pairwise_matrix_nms(boxes, scores, threshold):
    """NMS as tinynas did it before it computed only the kept boxes' overlaps: the full matrix."""
    order = torch.argsort(scores, descending=True, stable=True)
    overlaps = (box_iou(boxes[order], boxes[order]) > threshold).numpy()
    suppressed, keep = np.zeros(len(order), dtype=bool), []
    for i in range(len(order)):
        if not suppressed[i]:
            keep.append(i)
            suppressed |= overlaps[i]
    return order[keep].tolist()

def test_nms_equals_the_pairwise_matrix_form_on_crowded_scenes():
    """Dense clusters (most boxes suppressed), exact duplicates, tied scores, degenerate boxes and
    a max_keep cut: the kept indices are those of the full-matrix pass, in the same order."""
    g = torch.Generator().manual_seed(11)
    for scene in range(8):
        n = int(torch.randint(1, 1500, (1,), generator=g))
        centres = torch.rand(8, 2, generator=g) * 300
        xy = centres[torch.randint(0, 8, (n,), generator=g)] + torch.randn(n, 2, generator=g) * 6
        wh = torch.rand(n, 2, generator=g) * 40
        wh[: n // 20] = 0  # zero-area boxes
        boxes = torch.cat([xy, xy + wh], 1)
        boxes[n // 2:n // 2 + n // 10] = boxes[: n // 10]  # exact duplicates
        scores = torch.rand(n, generator=g)
        scores[: n // 4] = torch.round(scores[: n // 4] * 10) / 10  # ties
        for threshold in (0.3, 0.7):
            full = pairwise_matrix_nms(boxes, scores, threshold)
            assert nms(boxes, scores, threshold).tolist() == full
            for cut in (1, 100):
                assert nms(boxes, scores, threshold, max_keep=cut).tolist() == full[:cut]

def test_multiclass_nms_keeps_overlapping_boxes_of_other_classes():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60]], dtype=torch.float32)
    scores = torch.tensor([[0.9, 0.8], [0.8, 0.01], [0.02, 0.3]])
    found = multiclass_nms(scores, boxes, conf_threshold=0.05, iou_threshold=0.5)
    got = sorted(zip(found.classes.tolist(), [round(s, 2) for s in found.scores.tolist()]))
    # Anchor 1 (class 0) overlaps anchor 0 (class 0) and is dropped; class 1 of anchor 0 stays.
    assert got == [(0, 0.9), (1, 0.3), (1, 0.8)]
    assert found.scores.tolist() == sorted(found.scores.tolist(), reverse=True)
    few = multiclass_nms(scores, boxes, conf_threshold=0.05, iou_threshold=0.5, max_detections=2)
    assert len(few) == 2 and few.scores.min() >= 0.8

def test_predict_prepares_images_as_validation_does(tmp_path):
    """What the model sees at predict time is bit-identical to a letterboxed val item in training."""
    from torch import nn

    from tinynas.data import CocoDataset, DetectionDataset, make_synthetic_dataset
    from tinynas.detect.predict import detect_image, read_image

    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.anchor = nn.Parameter(torch.zeros(1))

        def forward(self, images):
            self.seen = images
            return torch.zeros(1, 4, 3), torch.zeros(1, 4, 4)

    data = make_synthetic_dataset(tmp_path, images=1, val_images=1, size=96, seed=3)
    val = DetectionDataset(CocoDataset(data.val_annotations, data.val_images), 64)
    recorder = Recorder()
    found = detect_image(recorder, read_image(val.coco.image_path(0)), size=64)
    assert len(found) == 0
    assert torch.equal(recorder.seen[0], val[0][0])
    assert 0.0 <= float(recorder.seen.min()) and float(recorder.seen.max()) <= 1.0


def recipe(**changes):
    doc = {"backbone": {"arch": TINY_ARCH, "wrap": "res"}, "neck": {"out_channels": [8, 16, 24]},
           "head": {"num_classes": 3}}
    for key, value in changes.items():
        section, field = key.split("__")
        doc[section][field] = value
    return doc

def test_recipe_defaults_resolve_and_round_trip():
    parsed = parse_model_recipe(recipe(), "r.yaml")
    assert parsed.backbone.out_indices == (2, 3, 4)
    assert parse_model_recipe(parsed.to_dict(), "again") == parsed
    csp = parse_model_recipe(recipe(backbone__wrap="csp"), "r.yaml")
    assert csp.backbone.out_indices == (2, 3, 4)

@pytest.mark.parametrize("key,value,field", [
    ("backbone__wrap", "dense", "backbone.wrap"),
    ("backbone__act", "tanh", "backbone.act"),
    ("backbone__out_indices", [1, 2], "backbone.out_indices"),
    ("backbone__out_indices", [2, 3, 9], "backbone.out_indices"),
    ("backbone__focus", "yes", "backbone.focus"),
    ("backbone__colour", 1, "backbone.colour"),
    ("neck__out_channels", [8, 16], "neck.out_channels"),
    ("neck__depth", -1, "neck.depth"),
    ("head__num_classes", 0, "head.num_classes"),
    ("head__strides", [4, 8, 16], "head.strides"),
    ("backbone__out_indices", [1, 3, 4], "head.strides"),
    ("backbone__arch", "no-such-arch", "backbone.arch"),
])
def test_recipe_errors_name_the_field(key, value, field):
    with pytest.raises(UserError) as err:
        parse_model_recipe(recipe(**{key: value}), "r.yaml")
    assert err.value.source == "r.yaml" and err.value.field == field

def test_recipe_rejects_a_stem_that_images_cannot_feed():
    arch = [dict(TINY_ARCH[0], **{"in": 5})] + [dict(b) for b in TINY_ARCH[1:]]
    with pytest.raises(UserError) as err:
        parse_model_recipe(recipe(backbone__arch=arch), "r.yaml")
    assert err.value.field == "backbone.focus"
    with pytest.raises(UserError) as err:
        parse_model_recipe(recipe(backbone__focus=False, backbone__arch=[dict(TINY_ARCH[0], **{"in": 12})]
                                  + TINY_ARCH[1:]), "r.yaml")
    assert err.value.field == "backbone.focus"

def test_box_iou_known_values():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    assert torch.allclose(box_iou(a, b), torch.tensor([[1 / 7, 1.0, 0.0]]))


def test_csp_wrap_merges_stride_one_blocks_into_the_stage_before():
    from tinynas.archio import load_arch
    from tinynas.nn.wrap_csp import CSPBackbone, csp_stages
    from tinynas.resources import ARCH_DIR

    arch = load_arch(ARCH_DIR / "damoyolo-m.txt")
    assert csp_stages(arch) == [(1,), (2,), (3, 4), (5,)]
    with torch.device("meta"):
        backbone = CSPBackbone(arch, act="silu")
    merged = backbone.stages[3]
    # Block 3 (L=4) loses its first unit to the downsampler; block 4 (L=4) keeps all four.
    assert len(merged.units) == 3 + 4
    assert backbone.stages[4].spp is not None and backbone.stages[3].spp is None
    assert backbone.out_indices == (2, 3, 4) and backbone.out_channels == (128, 256, 512)


def test_res_wrap_has_no_shortcut_on_stride_two_units_and_spp_in_the_last_stage():
    from tinynas.archio import load_arch
    from tinynas.nn.spp import SPPBottleneck
    from tinynas.nn.wrap_res import ResBackbone, ResUnit
    from tinynas.resources import ARCH_DIR

    arch = load_arch(ARCH_DIR / "damoyolo-t.txt")
    with torch.device("meta"):
        backbone = ResBackbone(arch)
    for spec, block in zip(arch.blocks[1:], backbone.blocks[1:]):
        units = [m for m in block if isinstance(m, ResUnit)]
        assert len(units) == spec.depth
        assert units[0].residual == (spec.stride == 1)
        assert all(u.residual for u in units[1:])
        assert (units[0].proj is not None) == (spec.stride == 1 and spec.in_channels != spec.out_channels)
    spp = [i for i, block in enumerate(backbone.blocks) if any(isinstance(m, SPPBottleneck) for m in block.modules())]
    assert spp == [5] and isinstance(backbone.blocks[5][1], SPPBottleneck)


@pytest.mark.parametrize("wrap", ["res", "csp"])
def test_plain_convs_without_reparam_still_fuse_exactly(wrap):
    from tinynas.detect import build_detector

    model = build_detector(parse_model_recipe(recipe(backbone__wrap=wrap, backbone__reparam=False), "r"))
    assert not any(isinstance(m, RepConv) for m in model.backbone.modules())
    randomise_bn(model, seed=4)
    model.eval()
    images = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        before = model(images)
        after = model.fuse()(images)
    for got, expected in zip(after, before):
        assert float((got - expected).abs().max() / expected.abs().max()) < 1e-4
