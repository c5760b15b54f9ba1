"""The other YOLO systems' parts as recipe options: every wrap x neck x head builds from a shipped
space's architecture, the representative ones fuse and export exactly, recipes refuse what the
chosen types do not take, and the latency ops cover the new types."""

from collections import Counter

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from conftest import space_path
from fuse_helpers import assert_fuses_exactly, randomise
from tinynas import UserError
from tinynas.detect.conv_ops import detector_op_counts, traced_backbone_op_counts
from tinynas.detect.decode import decode_boxes, dfl_integral
from tinynas.detect.detector import Detector
from tinynas.detect.heads import HEADS
from tinynas.detect.necks import NECKS
from tinynas.detect.model_recipe import load_model_recipe, output_channels, output_strides, parse_model_recipe
from tinynas.ops import REGULAR, ConvOp
from tinynas.space import load_space
from tinynas.train.recipe import parse_train_recipe

ARCH = load_space(space_path("k1kx")).initial
WRAPS = ("res", "csp", "efficientrep")
SIZE = 320
ANCHORS = sum((SIZE // s) ** 2 for s in (8, 16, 32))
NECK_OUT = [32, 64, 128]
CLASSES = 3


def four_levels(wrap: str) -> list[int]:
    """The wrap's default three levels and, before them, the last output at stride 4."""
    doc = parse_model_recipe(model_doc(wrap, "giraffe", "zero"), "probe")
    three = list(doc.backbone.out_indices)
    finer = [i for i in range(three[0]) if output_strides(ARCH, wrap, True, (i,)) == (4,)]
    return [finer[-1]] + three


def model_doc(wrap: str, neck: str, head: str, reg_max: int = 16, levels: int = 3, **head_options) -> dict:
    backbone = {"arch": list(ARCH.to_dicts()), "wrap": wrap}
    if levels == 4:
        backbone["out_indices"] = four_levels(wrap)
    return {"name": f"{wrap}-{neck}-{head}",
            "backbone": backbone,
            "neck": {"type": neck, "out_channels": NECK_OUT, "depth": 0.33},
            "head": {"type": head, "num_classes": CLASSES, "reg_max": reg_max, **head_options}}


def combos():
    for wrap in WRAPS:
        for neck in NECKS.names():
            yield pytest.param(wrap, neck, 3, id=f"{wrap}-{neck}")
        yield pytest.param(wrap, "reppan", 4, id=f"{wrap}-reppan4")


@pytest.mark.parametrize("wrap,neck,levels", list(combos()))
def test_every_wrap_neck_and_head_composes_at_320(wrap, neck, levels):
    # Meta device: shapes only, so the whole cross product costs seconds. The backbone and neck
    # run once in the training form (BatchNorm on meta is the slow part); every head runs on
    # their outputs, then every detector runs whole once fused.
    images = torch.empty(1, 3, SIZE, SIZE, device="meta")
    features = None
    for head in HEADS.names():
        for reg_max in (0, 16):
            recipe = parse_model_recipe(model_doc(wrap, neck, head, reg_max, levels), "combo")
            assert (recipe.neck.type, recipe.head.type, recipe.backbone.wrap) == (neck, head, wrap)
            assert parse_model_recipe(recipe.to_dict(), "again") == recipe
            with torch.device("meta"), torch.no_grad():
                model = Detector(recipe)
                b = recipe.backbone
                assert model.backbone.out_channels == output_channels(b.arch, b.wrap, b.out_indices)
                assert len(model.backbone.out_channels) == levels
                if features is None:
                    features = model.features(images)
                cls, box = model.head(features)
                assert cls.shape == (1, ANCHORS, CLASSES) and box.shape == (1, ANCHORS, 4 * (reg_max + 1))
                model.fuse()
                assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
                scores, boxes = model(images)
            assert scores.shape == (1, ANCHORS, CLASSES) and boxes.shape == (1, ANCHORS, 4)


class RawOutputs(nn.Module):
    """A detector's class logits and box output (before the sigmoid and the decoding)."""

    def __init__(self, detector: Detector):
        super().__init__()
        self.detector = detector

    def forward(self, images):
        return self.detector.forward_raw(images)[:2]


# Each wrap, neck and head at least once, both box codings, BiC's four levels.
REPRESENTATIVE = [
    ("res", "giraffe", "zero", 16, 3),
    ("csp", "pafpn", "decoupled", 0, 3),
    ("efficientrep", "reppan", "effidehead", 0, 4),
    ("res", "asff", "tood", 16, 3),
    ("csp", "asff_sim", "effidehead", 16, 3),
    ("efficientrep", "gsconv", "decoupled", 16, 3),
    ("res", "reppan", "tood", 0, 3),
]


def real_detector(wrap, neck, head, reg_max, levels, **head_options) -> Detector:
    torch.manual_seed(0)
    recipe = parse_model_recipe(model_doc(wrap, neck, head, reg_max, levels, **head_options), "real")
    return randomise(Detector(recipe))


@pytest.mark.parametrize("wrap,neck,head,reg_max,levels", REPRESENTATIVE,
                         ids=["-".join(map(str, c)) for c in REPRESENTATIVE])
def test_representative_detectors_fuse_exactly_at_320(wrap, neck, head, reg_max, levels):
    # TOOD's published GroupNorm does not fold into a conv; its BatchNorm form does.
    options = {"norm": "bn"} if head == "tood" else {}
    model = real_detector(wrap, neck, head, reg_max, levels, **options)
    images = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    assert_fuses_exactly(RawOutputs(model), images)


@pytest.mark.parametrize("wrap,neck,head,reg_max,levels", REPRESENTATIVE[1:4],
                         ids=["-".join(map(str, c)) for c in REPRESENTATIVE[1:4]])
def test_representative_detectors_export_to_onnx_and_match_onnxruntime(wrap, neck, head, reg_max, levels,
                                                                       tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from tinynas.deploy.onnx_export import export_onnx, run_onnx

    model = real_detector(wrap, neck, head, reg_max, levels)
    path = tmp_path / "detector.onnx"
    export_onnx(model, path, SIZE)
    images = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2)) * 255
    with torch.no_grad():
        expected = [t.numpy() for t in model.eval()(images)]
    got = run_onnx(path, images)
    # Scores are probabilities (an objectness head starts them near 1e-4, so a difference
    # relative to the largest would measure float rounding); boxes are pixels.
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        assert np.abs(g - e).max() <= 1e-4 * max(1.0, np.abs(e).max())


def test_direct_boxes_decode_as_distances_in_strides():
    distances = torch.tensor([[[1.0, 2.0, 3.0, 0.5]]])
    assert torch.equal(dfl_integral(distances, 0), distances)
    boxes = decode_boxes(distances, torch.tensor([[80.0, 40.0]]), torch.tensor([8.0]), 0)
    assert boxes.tolist() == [[[72.0, 24.0, 104.0, 44.0]]]


def test_a_recipe_without_types_is_giraffe_and_zero_and_types_round_trip_through_yaml():
    shipped = load_model_recipe("damoyolo-t")
    old = shipped.to_dict()
    del old["neck"]["type"], old["head"]["type"]
    assert parse_model_recipe(old, "old checkpoint") == shipped
    assert (shipped.neck.type, shipped.head.type) == ("giraffe", "zero")
    tood = parse_model_recipe(model_doc("res", "asff", "tood", stacked_convs=2, width=48), "r")
    assert dict(tood.head.options) == {"width": 48, "stacked_convs": 2}
    assert tood.neck.act == "silu"  # asff's own default, not giraffe's relu
    again = parse_model_recipe(yaml.safe_load(yaml.safe_dump(tood.to_dict())), "again")
    assert again == tood
    with torch.device("meta"):
        head = Detector(tood).head
    assert head.width == 48 and len(head.inter_convs) == 2


@pytest.mark.parametrize("section,key,value,field,words", [
    ("neck", "hidden_ratio", 0.5, "neck.hidden_ratio", "unknown option (known: out_channels, depth, act) of the "
                                                       "pafpn neck"),
    ("neck", "type", "bifpn", "neck.type", "expected one of giraffe, pafpn"),
    ("neck", "weight_channels", 0, "neck.weight_channels", "expected a positive integer"),
    ("head", "norm", "ln", "head.norm", "expected one of gn, bn"),
    ("head", "width", 16, "head.width", "unknown option (known: num_classes, reg_max, strides, prior_prob, act) "
                                        "of the effidehead head"),
    ("head", "prior_prob", 1.5, "head.prior_prob", "expected a value in (0, 1), got 1.5"),
])
def test_part_options_follow_the_chosen_type(section, key, value, field, words):
    doc = model_doc("res", "pafpn", "effidehead")
    if key == "weight_channels":
        doc["neck"]["type"] = "asff"
    if key == "norm":
        doc["head"]["type"] = "tood"
    doc[section][key] = value
    with pytest.raises(UserError) as caught:
        parse_model_recipe(doc, "m.yaml")
    assert caught.value.source == "m.yaml" and caught.value.field == field
    assert words in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("edit,field,words", [
    (lambda d: d["backbone"].update(out_indices=four_levels("res")), "backbone.out_indices",
     "the pafpn neck reads three levels, got 4"),
    (lambda d: d["backbone"].update(csp_stack=True), "backbone.csp_stack", "only the efficientrep wrap"),
    (lambda d: d["neck"].update(type="asff_sim", out_channels=[32, 48, 96]), "neck", "twice as wide"),
    (lambda d: d["neck"].update(type="asff", expand_kernel=2), "neck.expand_kernel", "must be odd"),
    (lambda d: d.update(neck={"type": "giraffe", "hidden_ratio": 0.01}), "neck", "a layer with no channels"),
])
def test_model_recipe_refuses_what_the_parts_cannot_build(edit, field, words):
    doc = model_doc("res", "pafpn", "effidehead")
    edit(doc)
    with pytest.raises(UserError) as caught:
        parse_model_recipe(doc, "m.yaml")
    assert caught.value.field == field and words in str(caught.value)


def test_train_recipe_reads_loss_options_and_refuses_dfl_without_bins(tmp_path):
    data = {k: str(tmp_path) for k in ("train_images", "train_annotations", "val_images", "val_annotations")}
    doc = {**model_doc("res", "pafpn", "effidehead", reg_max=0), "data": {**data, "size": 320},
           "train": {"assigner": "tal", "cls_loss": "vfl", "box_loss": "siou", "dfl": False}}
    recipe = parse_train_recipe(doc, "t.yaml")
    options = recipe.train.loss_options(recipe.model.head.reg_max)
    assert (options.assigner, options.cls_loss, options.box_loss, options.dfl) == ("tal", "vfl", "siou", False)
    assert recipe.to_dict()["train"]["assigner"] == "tal"
    # dfl: auto (the default) follows the head: off without bins, on with them.
    plain = parse_train_recipe({**doc, "train": {"assigner": "tal"}}, "t.yaml")
    assert plain.train.dfl == "auto" and plain.train.loss_options(0).dfl is False
    binned = parse_train_recipe({**doc, **model_doc("res", "pafpn", "effidehead", reg_max=16), "train": {}}, "t.yaml")
    assert binned.train.loss_options(binned.model.head.reg_max).dfl is True
    for train, field, words in (({"dfl": True}, "train.dfl", "set train.dfl: false"),
                                ({"assigner": "atss", "dfl": False}, "train.assigner", "one of alignota, simota, tal"),
                                ({"box_loss": "diou", "dfl": False}, "train.box_loss", "one of giou, ciou, siou")):
        with pytest.raises(UserError) as caught:
            parse_train_recipe({**doc, "train": train}, "t.yaml")
        assert caught.value.field == field and words in str(caught.value)


def test_shipped_yolo_recipes_have_the_published_sizes():
    from tinynas.detect.costs import recipe_costs

    # Params as published; GFLOPs in torch's count, which gives the two 2x2 stride-2 transposed
    # convs of Rep-PAN their true MACs where thop (the published figures) counts four times as many.
    for name, params, gflops in (("yolov6-n", 4.647, 11.32), ("yolov6-s", 18.537, 44.97), ("yolox-s", 8.957, 26.69)):
        total = recipe_costs(load_model_recipe(name), 640)[-1]
        assert total.params / 1e6 == pytest.approx(params, abs=1e-3), name
        assert total.flops / 1e9 == pytest.approx(gflops, abs=0.01), name


def _expected_reppan_and_effidehead(channels, sizes, out, classes, reg_max, repeats):
    """Rep-PAN (three levels, fused) and the efficient decoupled head, conv by conv, from the
    module docstrings: 1x1 laterals, RepBlocks of 3x3 units, 3x3 stride-2 downsamplers; per
    level a 1x1 stem, a 3x3 conv per task and 1x1 predictors. The 2x2 transposed upsamplers
    are not Conv2d and are not latency-table ops."""
    c2, c1, c0 = channels
    s8, s16, s32 = sizes
    o0, o1, o2 = out
    convs = Counter()

    def conv(cin, cout, k, size, stride=1):
        convs[ConvOp(REGULAR, cin, cout, k, stride, size, size, False, 1)] += 1

    def rep_block(cin, cout, size):
        conv(cin, cout, 3, size)
        for _ in range(repeats - 1):
            conv(cout, cout, 3, size)

    conv(c0, o1, 1, s32)               # lateral0
    rep_block(o1 + c1, o1, s16)        # p4 on the upsampled lateral and x1
    conv(o1, o0, 1, s16)               # lateral1
    rep_block(o0 + c2, o0, s8)         # p3
    conv(o0, o0, 3, s8, 2)             # down1
    rep_block(2 * o0, o1, s16)         # n3
    conv(o1, o1, 3, s16, 2)            # down0
    rep_block(2 * o1, o2, s32)         # n4
    for c, size in zip(out, sizes):
        conv(c, c, 1, size)
        conv(c, c, 3, size, 1)
        conv(c, c, 3, size, 1)
        conv(c, classes, 1, size)
        conv(c, 4 * (reg_max + 1), 1, size)
    return convs


def test_latency_ops_cover_a_new_neck_and_head():
    recipe = parse_model_recipe(model_doc("res", "reppan", "effidehead", reg_max=0), "ops")
    detector = Counter(dict(detector_op_counts(recipe, SIZE)))
    backbone = Counter(dict(traced_backbone_op_counts(recipe, SIZE)))
    b = recipe.backbone
    expected = _expected_reppan_and_effidehead(output_channels(b.arch, b.wrap, b.out_indices),
                                               [SIZE // 8, SIZE // 16, SIZE // 32], NECK_OUT, CLASSES, 0,
                                               repeats=max(round(12 * 0.33), 1))
    assert detector - backbone == expected
    assert backbone - detector == Counter()


def test_distillation_composes_with_new_heads_and_refuses_logits_without_bins(tmp_path):
    from tinynas.checkpoint import save_checkpoint
    from tinynas.distill.term import DistillationTerm
    from tinynas.train.extra_loss import StepContext
    from tinynas.train.recipe import DistillConfig

    def detector(head, reg_max, neck="pafpn"):
        torch.manual_seed(0)
        return Detector(parse_model_recipe(model_doc("res", neck, head, reg_max), head))

    for head, reg_max in (("tood", 16), ("effidehead", 0)):
        save_checkpoint(tmp_path / f"{head}.pt", detector(head, reg_max))
    images = torch.rand(1, 3, 64, 64)

    def distil(term, student):
        term.attach(student, torch.device("cpu"), amp=False)
        feats = student.features(images)
        cls, box = student.head(feats)
        loss = term.loss(StepContext(0, 10, 10, images, feats, cls, box))
        assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0
        loss.backward()
        return student

    # Feature methods read the three neck outputs whatever the neck and head types.
    student = distil(DistillationTerm(DistillConfig(teacher=str(tmp_path / "effidehead.pt"), method="cwd")),
                     detector("decoupled", 0, neck="gsconv"))
    assert all(p.grad is not None for p in student.neck.parameters())
    # Logit distillation needs the same head geometry, not the same head type.
    student = distil(DistillationTerm(DistillConfig(teacher=str(tmp_path / "tood.pt"), method="logit")),
                     detector("zero", 16))
    assert all(p.grad is not None for p in student.head.parameters())
    term = DistillationTerm(DistillConfig(teacher=str(tmp_path / "effidehead.pt"), method="logit"))
    with pytest.raises(UserError) as caught:
        term.attach(detector("decoupled", 0), torch.device("cpu"), amp=False)
    assert caught.value.field == "head.reg_max" and "reg_max 0" in str(caught.value)
