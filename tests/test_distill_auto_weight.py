"""``distill.loss_weight: auto``: the weight that holds the distillation gradient at a set
fraction of the detection gradient, its state across a resume, and the recipe field."""

import math

import pytest
import torch

from tinynas import UserError
from tinynas.checkpoint import load_checkpoint
from tinynas.cli import main
from tinynas.data import CocoDataset, DetectionDataset
from tinynas.data.collate import collate_detection
from tinynas.detect.anchors import anchor_points
from tinynas.detect.detector import Detector
from tinynas.distill import FeatureDistiller, self_distillation_loss
from tinynas.distill.auto_weight import AutoDistillWeight
from tinynas.train.losses import DetectionLoss
from tinynas.train.recipe import parse_train_recipe
from tinynas.train.run_files import MetricsLog
from tinynas.api import train_detector as train

from train_helpers import synthetic, tiny_recipe, write_recipe


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic(tmp_path_factory.mktemp("auto"), images=16, val_images=4, size=64, seed=3)


def _grad_norm(loss, tensors):
    grads = torch.autograd.grad(loss, list(tensors), retain_graph=True, allow_unused=True)
    return float(torch.sqrt(sum(g.pow(2).sum() for g in grads if g is not None)))


@pytest.fixture(scope="module")
def forward(data, tmp_path_factory):
    """One training forward of a real student and a wider random teacher on a real batch."""
    out = tmp_path_factory.mktemp("fwd")
    student_doc = tiny_recipe(data, out / "s", 64, epochs=1)
    teacher_doc = tiny_recipe(data, out / "t", 64, epochs=1)
    teacher_doc["neck"]["out_channels"] = [48, 96, 192]
    torch.manual_seed(0)
    student = Detector(parse_train_recipe(student_doc).model).train()
    teacher = Detector(parse_train_recipe(teacher_doc).model).eval()
    dataset = DetectionDataset(CocoDataset(data.train_annotations, data.train_images), 64)
    images, targets = collate_detection([dataset[i] for i in range(4)])
    feats = student.features(images)
    cls_logits, reg_logits = student.head(feats)
    points, strides = anchor_points([f.shape[-2:] for f in feats], student.head.strides, dtype=torch.float32,
                                    device="cpu")
    detection = DetectionLoss(student.num_classes, student.head.reg_max)(cls_logits, reg_logits, points, strides,
                                                                           targets)["loss"]
    with torch.no_grad():
        teacher_feats = teacher.features(images)
        teacher_head = teacher.head(teacher_feats)
    distiller = FeatureDistiller([32, 64, 128], [48, 96, 192], "cwd")
    cwd = distiller(list(feats), list(teacher_feats))
    logit = self_distillation_loss(cls_logits, reg_logits, *teacher_head, student.head.reg_max)
    return {"feats": feats, "head": (cls_logits, reg_logits), "detection": detection, "cwd": cwd, "logit": logit}


def test_auto_weight_sets_the_distillation_gradient_to_the_target_ratio(forward):
    feats, detection, cwd = forward["feats"], forward["detection"], forward["cwd"]
    det_norm = _grad_norm(detection, feats)
    raw_ratio = _grad_norm(cwd, feats) / det_norm
    assert raw_ratio > 1  # at weight 1 a fresh CWD dwarfs the detection gradient, as measured

    auto = AutoDistillWeight(grad_ratio=0.66)
    weight = auto.update(0, detection, cwd, feats)
    assert _grad_norm(weight * cwd, feats) == pytest.approx(0.66 * det_norm, rel=1e-4)
    assert weight == pytest.approx(0.66 / raw_ratio, rel=1e-4)

    # a distillation loss whose raw ratio is ten times larger gets a weight ten times smaller
    louder = AutoDistillWeight(grad_ratio=0.66)
    weight_louder = louder.update(0, detection, 10 * cwd, feats)
    assert weight_louder == pytest.approx(weight / 10, rel=1e-4)
    assert _grad_norm(weight_louder * 10 * cwd, feats) == pytest.approx(0.66 * det_norm, rel=1e-4)

    # later measurements are smoothed in log space: one 10x step moves the weight by 10^-(1-momentum)
    smoothed = auto.update(1, detection, 10 * cwd, feats)
    assert smoothed == pytest.approx(weight * 10 ** -(1 - auto.momentum), rel=1e-4)
    assert auto.measurements_ == 2


def test_auto_weight_on_head_outputs_for_logit_distillation(forward):
    head, detection, logit = forward["head"], forward["detection"], forward["logit"]
    weight = AutoDistillWeight(grad_ratio=0.3).update(0, detection, logit, head)
    assert _grad_norm(weight * logit, head) == pytest.approx(0.3 * _grad_norm(detection, head), rel=1e-4)


def test_auto_weight_measures_early_then_every_k_and_skips_useless_gradients(forward):
    feats, detection, cwd = forward["feats"], forward["detection"], forward["cwd"]
    auto = AutoDistillWeight(grad_ratio=0.66, warmup_iters=3, every=5)
    assert [i for i in range(16) if auto.due(i)] == [0, 1, 2, 5, 10, 15]
    # a distillation loss with no gradient (student equals teacher) leaves the weight unset, not inf
    assert auto.update(0, detection, torch.zeros(()), feats) == 0.0 and auto.measurements_ == 0
    first = auto.update(1, detection, cwd, feats)
    assert first > 0 and auto.measurements_ == 1
    assert auto.update(3, detection, 10 * cwd, feats) == first  # not due: unchanged
    nan = auto.update(5, detection, cwd * float("nan"), feats)
    assert nan == first and math.isfinite(nan)

    restored = AutoDistillWeight(grad_ratio=0.66)
    restored.load_state_dict(auto.state_dict())
    assert restored.scale_ == first and restored.measurements_ == 1


def test_resumed_auto_weight_run_equals_uninterrupted(data, tmp_path):
    train(parse_train_recipe(tiny_recipe(data, tmp_path / "t", 64, epochs=1, batch_size=8)), progress=False)
    doc = tiny_recipe(data, tmp_path / "a", 64, epochs=2, batch_size=8)
    # loss_weight: auto, the teacher's worth aside (a 1-epoch teacher may lead by nothing)
    doc["distill"] = {"teacher": str(tmp_path / "t" / "last.pt"), "method": "cwd", "worth_margin": 0}
    train(parse_train_recipe(doc), progress=False)
    doc_b = dict(doc, out=str(tmp_path / "b"))
    train(parse_train_recipe(doc_b), stop_after=1, progress=False)
    assert main(["train", "--resume", str(tmp_path / "b"), "--quiet"]) == 0

    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    state_a, state_b = a.extra["distill_auto_weight"], b.extra["distill_auto_weight"]
    assert state_a == state_b and state_a["measurements"] == 4  # 2 iterations a epoch, all measured
    for key in a.state_dict:
        assert torch.equal(a.state_dict[key], b.state_dict[key]), key
        assert torch.equal(a.extra["model"][key], b.extra["model"][key]), key
    rows_a = MetricsLog(tmp_path / "a" / "metrics.csv").rows()
    rows_b = MetricsLog(tmp_path / "b" / "metrics.csv").rows()
    weights = [float(r["distill_weight"]) for r in rows_a]
    assert weights == [float(r["distill_weight"]) for r in rows_b]
    # the weight is measured (CWD is loud on a fresh student: far below 1), not the schedule alone
    assert all(0 < w < 0.5 for w in weights)


@pytest.mark.parametrize("value", [-0.5, "fast", True, float("inf")])
def test_bad_loss_weight_is_a_user_error_naming_the_field(data, tmp_path, value):
    doc = tiny_recipe(data, tmp_path / "r", 64, epochs=1)
    doc["distill"] = {"loss_weight": value}
    with pytest.raises(UserError, match=r"distill\.loss_weight.*auto or a non-negative number"):
        parse_train_recipe(doc)


def test_loss_weight_accepts_auto_and_numbers(data, tmp_path, capsys):
    doc = tiny_recipe(data, tmp_path / "r", 64, epochs=1)
    assert parse_train_recipe(doc).distill.loss_weight == "auto"  # the default
    for value, expected in (("auto", "auto"), (0.02, 0.02), (1, 1.0), (0, 0.0)):
        doc["distill"] = {"loss_weight": value}
        assert parse_train_recipe(doc).distill.loss_weight == expected
    doc["distill"] = {"grad_ratio": 0}
    with pytest.raises(UserError, match=r"distill\.grad_ratio"):
        parse_train_recipe(doc)

    recipe = write_recipe(tmp_path / "r.yaml", tiny_recipe(data, tmp_path / "r", 64, epochs=1))
    assert main(["train", str(recipe), "distill.loss_weight=-1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "distill.loss_weight" in err and err.count("\n") == 1
