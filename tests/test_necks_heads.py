"""The necks and heads of other YOLO systems, and the EfficientRep wrap: shapes for every shipped
space's level widths, exact fusion, ONNX export, and the mapping onto tinynas's head contract."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from tinynas.errors import UserError

from conftest import SPACE_NAMES, space_path
from fuse_helpers import assert_fuses_exactly, randomise
from tinynas.detect.anchors import anchor_points
from tinynas.detect.decode import distance_to_box
from tinynas.detect.heads import DFL, HEADS, LTRB, YOLOX, create_head, joint_logit, yolox_to_ltrb
from tinynas.detect.necks import NECKS, create_neck
from tinynas.nn.fuse import fuse_model
from tinynas.nn.repvgg import RepVGGBlock
from tinynas.nn.wrap_csp import CSPBackbone, csp_stages
from tinynas.nn.wrap_efficientrep import EfficientRepBackbone, yolov6_arch
from tinynas.nn.wrap_res import ResBackbone
from tinynas.space import load_space
from tinynas.train.losses import DetectionLoss

WRAPS = {"res": ResBackbone, "csp": CSPBackbone, "efficientrep": EfficientRepBackbone}
NEW_NECKS = ["pafpn", "reppan", "asff", "asff_sim", "gsconv"]
NEW_HEADS = ["decoupled", "effidehead", "tood"]
OUT = (64, 128, 256)
STRIDES = (8, 16, 32)


def _four_outputs(name: str, arch) -> tuple[int, ...]:
    if name == "res":
        return arch.stage_ends()[-4:]
    count = len(csp_stages(arch)) + 1
    return tuple(range(count - 4, count))


def _level_widths(levels: int) -> dict[str, tuple[int, ...]]:
    """Level widths of each shipped space's initial arch in each wrap (built on the meta
    device: only the widths are needed), one entry per distinct set."""
    found: dict[tuple[int, ...], str] = {}
    for space in SPACE_NAMES:
        arch = load_space(space_path(space)).initial
        for wrap, cls in WRAPS.items():
            with torch.device("meta"):
                indices = _four_outputs(wrap, arch) if levels == 4 else None
                widths = cls(arch, indices).out_channels
            found.setdefault(tuple(widths), f"{space}-{wrap}")
    return {label: widths for widths, label in found.items()}


LEVELS = _level_widths(3)
LEVELS4 = _level_widths(4)


def feature_maps(widths, size: int, seed: int = 0, first_stride: int = 8) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, c, size // (first_stride * 2 ** i), size // (first_stride * 2 ** i), generator=g)
            for i, c in enumerate(widths)]


def neck_cases():
    for neck in NEW_NECKS:
        for label, widths in LEVELS.items():
            yield pytest.param(neck, widths, id=f"{neck}-{label}")
    for label, widths in LEVELS4.items():
        yield pytest.param("reppan", widths, id=f"reppan4-{label}")


def build_neck(name: str, widths) -> nn.Module:
    return randomise(create_neck(name, widths, OUT, depth=0.33))


def build_head(name: str, reg_max: int, num_classes: int = 80) -> nn.Module:
    return randomise(create_head(name, OUT, num_classes, reg_max, STRIDES))


def test_widths_cover_every_space_in_every_wrap():
    # k1kx and kxkx share their level widths, so three sets stand for twelve (space, wrap) pairs.
    assert set(LEVELS.values()) == {(96, 192, 384), (512, 1024, 2048), (40, 96, 192)}
    assert all(len(w) == 4 for w in LEVELS4.values())


@pytest.mark.parametrize("neck,widths", list(neck_cases()))
def test_neck_gives_three_levels_at_320_and_640(neck, widths):
    model = build_neck(neck, widths)
    first = 4 if len(widths) == 4 else 8
    for size in (320, 640):
        with torch.no_grad():
            outputs = model(feature_maps(widths, size, first_stride=first))
        assert [tuple(o.shape) for o in outputs] == [(1, c, size // s, size // s) for c, s in zip(OUT, STRIDES)]
        assert all(torch.isfinite(o).all() for o in outputs)


@pytest.mark.parametrize("neck,widths", list(neck_cases()))
def test_neck_fuses_exactly(neck, widths):
    first = 4 if len(widths) == 4 else 8
    assert_fuses_exactly(build_neck(neck, widths), feature_maps(widths, 320, seed=1, first_stride=first))


@pytest.mark.parametrize("head", NEW_HEADS)
@pytest.mark.parametrize("reg_max", [0, 16])
def test_head_contract_shapes_at_320_and_640(head, reg_max):
    model = build_head(head, reg_max, num_classes=7)
    for size in (320, 640):
        anchors = sum((size // s) ** 2 for s in STRIDES)
        with torch.no_grad():
            cls, box = model(feature_maps(OUT, size))
        assert cls.shape == (1, anchors, 7) and box.shape == (1, anchors, 4 * (reg_max + 1))
    assert model.box_coding == (DFL if reg_max else model.direct_coding)


@pytest.mark.parametrize("head", NEW_HEADS)
@pytest.mark.parametrize("reg_max", [0, 16])
def test_head_fuses_exactly(head, reg_max):
    assert_fuses_exactly(build_head(head, reg_max), feature_maps(OUT, 320, seed=2))


def test_tood_with_groupnorm_keeps_it_and_with_batchnorm_folds_it():
    gn = build_head("tood", 0)
    bn = randomise(create_head("tood", OUT, 80, 0, STRIDES, norm="bn"))
    assert any(isinstance(m, nn.GroupNorm) for m in fuse_model(gn).modules())
    assert_fuses_exactly(bn, feature_maps(OUT, 320, seed=3))


def _export_and_run(module: nn.Module, inputs, tmp_path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Export the fused module the way ``deploy.onnx_export`` does; run it in onnxruntime."""
    import onnxruntime as ort

    from tinynas.deploy.onnx_trace import module_to_onnx

    class Levels(nn.Module):
        """Levels as separate graph inputs (a part takes them as one list)."""

        def __init__(self, part: nn.Module):
            super().__init__()
            self.part = part

        def forward(self, *levels):
            return tuple(self.part(list(levels)))

    wrapped = Levels(fuse_model(module).eval())
    path = tmp_path / "part.onnx"
    names = [f"level{i}" for i in range(len(inputs))]
    with torch.no_grad():
        expected = [t.numpy() for t in wrapped(*inputs)]
    path.write_bytes(module_to_onnx(wrapped, tuple(inputs), names))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {n: t.numpy() for n, t in zip(names, inputs)}), expected


def _assert_onnx_matches(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        assert np.abs(g - e).max() <= 1e-4 * max(1.0, np.abs(e).max())


@pytest.mark.parametrize("neck,levels", [(n, 3) for n in NEW_NECKS] + [("reppan", 4)])
def test_neck_exports_to_onnx(neck, levels, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    widths = (LEVELS4 if levels == 4 else LEVELS)["k1dwk1-res"]
    inputs = feature_maps(widths, 320, seed=4, first_stride=4 if levels == 4 else 8)
    _assert_onnx_matches(*_export_and_run(build_neck(neck, widths), inputs, tmp_path))


@pytest.mark.parametrize("head", NEW_HEADS)
@pytest.mark.parametrize("reg_max", [0, 16])
def test_head_exports_to_onnx(head, reg_max, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    _assert_onnx_matches(*_export_and_run(build_head(head, reg_max), feature_maps(OUT, 320, seed=5), tmp_path))


def test_joint_logit_is_the_logit_of_the_product_and_stays_finite():
    a = torch.tensor([-3.0, -0.5, 0.0, 0.7, 4.0, -60.0, 60.0, 60.0, -60.0], dtype=torch.float64)
    b = torch.tensor([2.0, -1.5, 0.0, 0.3, -4.0, 60.0, -60.0, 60.0, -60.0], dtype=torch.float64)
    got = joint_logit(a, b)
    assert torch.isfinite(got).all()
    p = torch.sigmoid(a) * torch.sigmoid(b)
    moderate = slice(0, 5)
    assert torch.allclose(got[moderate], torch.log(p[moderate] / (1 - p[moderate])), atol=1e-12)
    assert torch.allclose(torch.sigmoid(got), p, rtol=1e-9, atol=0)
    # Both near 1: the product's complement is s(-a) + s(a)s(-b) = 2e^-60 to first order.
    assert math.isclose(got[7].item(), 60.0 - math.log(2.0), rel_tol=1e-12)


def test_yolox_boxes_map_to_side_distances_that_decode_to_yolox_boxes():
    g = torch.Generator().manual_seed(6)
    box = torch.randn(50, 4, generator=g, dtype=torch.float64)
    points = torch.rand(50, 2, generator=g, dtype=torch.float64) * 300
    stride = 16.0
    # YOLOX's own decoding: centre = (offset + cell) * stride, size = exp(log size) * stride.
    centre = points + box[:, :2] * stride
    size = torch.exp(box[:, 2:]) * stride
    expected = torch.cat([centre - size / 2, centre + size / 2], 1)
    got = distance_to_box(points, yolox_to_ltrb(box) * stride)
    assert torch.allclose(got, expected, atol=1e-9)


@pytest.mark.parametrize("head", ["decoupled", "tood"])
def test_objectness_heads_give_yolox_scores_and_boxes_through_the_contract(head):
    model = build_head(head, 0, num_classes=5)
    feats = feature_maps(OUT, 64, seed=7)
    with torch.no_grad():
        native = model.forward_native(feats)
        cls, box = model(feats)
    assert native.box_coding == YOLOX and native.obj.shape == (1, 64 + 16 + 4, 1)
    torch.testing.assert_close(torch.sigmoid(cls), torch.sigmoid(native.cls) * torch.sigmoid(native.obj),
                               rtol=1e-5, atol=1e-7)
    points, strides = anchor_points([f.shape[-2:] for f in feats], STRIDES)
    centre = points + native.box[0, :, :2] * strides[:, None]
    size = torch.exp(native.box[0, :, 2:]) * strides[:, None]
    decoded = distance_to_box(points, box[0] * strides[:, None])
    torch.testing.assert_close(decoded, torch.cat([centre - size / 2, centre + size / 2], 1), rtol=1e-5, atol=1e-4)


def test_effidehead_direct_boxes_are_side_distances_unchanged():
    model = build_head("effidehead", 0)
    with torch.no_grad():
        native = model.forward_native(feature_maps(OUT, 64))
        _, box = model(feature_maps(OUT, 64))
    assert native.box_coding == LTRB and native.obj is None
    assert torch.equal(box, native.box)


@pytest.mark.parametrize("head", NEW_HEADS)
def test_dfl_heads_train_with_the_current_loss(head):
    torch.manual_seed(0)
    model = create_head(head, OUT, 3, 16, STRIDES).train()
    feats = feature_maps(OUT, 128, seed=8)
    cls, box = model(feats)
    points, strides = anchor_points([f.shape[-2:] for f in feats], STRIDES)
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 70.0, 90.0], [64.0, 64.0, 120.0, 100.0]]),
                "labels": torch.tensor([0, 2])}]
    losses = DetectionLoss(3, 16)(cls, box, points, strides, targets)
    assert losses["num_pos"] > 0 and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.reg_preds.parameters())


def test_registries_name_every_type_and_refuse_unknown_options():
    assert set(NEW_NECKS + ["giraffe"]) == set(NECKS.names())
    assert set(NEW_HEADS + ["zero"]) == set(HEADS.names())
    assert NECKS.options("reppan") == {"depth": 1.0, "act": "relu", "reparam": True}
    assert HEADS.options("tood")["norm"] == "gn"
    with pytest.raises(TypeError, match="hidden_ratio"):
        create_neck("pafpn", (32, 64, 128), OUT, hidden_ratio=1.0)
    with pytest.raises(UserError, match="unknown neck 'bifpn'"):
        create_neck("bifpn", (32, 64, 128), OUT)
    with pytest.raises(ValueError, match="already registered"):
        HEADS.register("tood", nn.Module)


def test_asff_sim_needs_widths_that_double():
    with pytest.raises(ValueError, match="twice as wide"):
        create_neck("asff_sim", (32, 64, 128), (64, 96, 192))


def test_gsconv_shuffle_interleaves_dense_and_depthwise_halves():
    from tinynas.detect.necks.gsconv import shuffle_halves

    x = torch.arange(8.0).reshape(1, 8, 1, 1)
    assert shuffle_halves(x).flatten().tolist() == [0, 2, 4, 6, 1, 3, 5, 7]


@pytest.mark.parametrize("groups,stride,width", [(1, 1, 8), (4, 1, 8), (1, 2, 8), (1, 1, 12)])
def test_repvgg_block_fuses_exactly_with_its_identity_branch(groups, stride, width):
    block = RepVGGBlock(8, width, 3, stride, groups)
    assert (block.identity is not None) == (stride == 1 and width == 8)
    randomise(block)
    x = torch.randn(2, 8, 11, 9)
    with torch.no_grad():
        expected = block(x)
        block.fuse()
        assert block.identity is None and block.is_fused
        torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("space", SPACE_NAMES[:2] + SPACE_NAMES[3:])
@pytest.mark.parametrize("csp_stack", [False, True])
def test_efficientrep_wrap_runs_and_fuses_exactly(space, csp_stack):
    arch = load_space(space_path(space)).initial
    torch.manual_seed(0)
    model = randomise(EfficientRepBackbone(arch, focus=True, csp_stack=csp_stack))
    x = torch.randn(1, 3, 128, 128)
    fused = assert_fuses_exactly(model, x)
    with torch.no_grad():
        outputs = fused(x)
    assert tuple(o.shape[1] for o in outputs) == model.out_channels
    assert [o.shape[-1] for o in outputs] == [16, 8, 4]


def test_yolov6_arch_follows_the_published_configs():
    # configs/yolov6n.py and yolov6s.py: widths x 0.25 / 0.5 rounded up to 8; RepBlock repeats
    # (6, 12, 18, 6) x 0.33 rounded, each stage adding its stride-2 unit.
    for variant, widths in (("n", (16, 32, 64, 128, 256)), ("s", (32, 64, 128, 256, 512))):
        arch = yolov6_arch(variant)
        assert tuple(b.out_channels for b in arch.blocks) == widths
        assert tuple(b.depth for b in arch.blocks[1:]) == (3, 5, 7, 3)
        assert all(b.stride == 2 for b in arch.blocks)


@pytest.mark.parametrize("head", ["decoupled", "tood"])
def test_objectness_heads_start_their_joint_score_at_the_prior(head):
    # The score trained is sigmoid(cls) x sigmoid(obj); it, not each factor, starts at the prior.
    model = create_head(head, (32, 64, 128), 3, 16, (8, 16, 32), prior_prob=0.01)
    for cls_pred, obj_pred in zip(model.cls_preds, model.obj_preds):
        score = torch.sigmoid(joint_logit(cls_pred.bias[:1], obj_pred.bias)).detach()
        assert float(score) == pytest.approx(0.01, rel=1e-5)
