"""Assigner, losses, schedule, EMA and optimiser groups on hand-built cases."""

import math

import pytest
import torch
from torch import nn

from tinynas.detect.anchors import anchor_points
from tinynas.detect.decode import decode_boxes
from tinynas.detect.nms import box_iou
from tinynas.train.assigner import AlignOTAAssigner
from tinynas.train.ema import ModelEMA
from tinynas.train.losses import DetectionLoss, distribution_focal_loss, giou, quality_focal_loss
from tinynas.train.optim import parameter_groups
from tinynas.train.schedule import learning_rate, scaled_lr


def _grid(size=64, strides=(8, 16, 32)):
    return anchor_points([(size // s, size // s) for s in strides], strides)


def test_assigner_matches_anchors_inside_and_near_each_box():
    points, strides = _grid()
    gt = torch.tensor([[8.0, 8.0, 40.0, 40.0], [44.0, 20.0, 60.0, 60.0]])
    labels = torch.tensor([0, 2])
    # Predictions: every anchor predicts the first box exactly, with neutral scores.
    boxes = gt[0].expand(len(points), 4).clone()
    scores = torch.full((len(points), 3), 0.5)
    result = AlignOTAAssigner().assign(scores, boxes, points, strides, gt, labels)
    pos = result.positive
    assert pos.any()
    for a in pos.nonzero(as_tuple=True)[0]:
        g = gt[result.gt_index[a]]
        x, y = points[a]
        assert g[0] < x < g[2] and g[1] < y < g[3]  # inside its box
        centre = (g[:2] + g[2:]) / 2
        assert ((points[a] - centre).abs() < 2.5 * strides[a]).all()  # and near its centre
    # Box 0 is predicted perfectly, so it gets up to top-k anchors with IoU 1.
    first = result.gt_index == 0
    assert 1 <= first.sum() <= 10
    assert torch.allclose(result.ious[first], torch.ones(int(first.sum())))
    # Box 1 has IoU 0 with every prediction: dynamic k falls back to one anchor.
    assert (result.gt_index == 1).sum() == 1


def test_assigner_handles_no_boxes():
    points, strides = _grid()
    result = AlignOTAAssigner().assign(torch.rand(len(points), 2), torch.rand(len(points), 4),
                                       points, strides, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert not result.positive.any()


def test_quality_focal_loss_vanishes_at_its_target():
    targets = torch.tensor([[0.0, 0.7], [0.3, 0.0]])
    logits = torch.logit(targets.clamp(1e-6, 1 - 1e-6))
    assert quality_focal_loss(logits, targets).abs().max() < 1e-6
    assert (quality_focal_loss(logits + 1.0, targets) > 0).all()


def test_giou_and_dfl_values():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[0.0, 0.0, 2.0, 2.0], [2.0, 0.0, 3.0, 1.0]])
    g = giou(a, b)
    assert g[0] == pytest.approx(1.0, abs=1e-6)
    assert g[1] == pytest.approx(0.0 - (3 - 2) / 3, abs=1e-5)  # disjoint: -(hull - union) / hull
    # DFL is smallest when the distribution puts mass on the two bins around the target.
    target = torch.tensor([2.25])
    good = torch.full((1, 5), -10.0)
    good[0, 2], good[0, 3] = math.log(0.75), math.log(0.25)
    bad = torch.zeros(1, 5)
    assert distribution_focal_loss(good, target) < distribution_focal_loss(bad, target)


def test_detection_loss_decreases_when_fitting_one_box():
    points, strides = _grid(64)
    num_anchors = len(points)
    cls = torch.zeros(1, num_anchors, 2, requires_grad=True)
    reg = torch.zeros(1, num_anchors, 4 * 17, requires_grad=True)
    gt = torch.tensor([[10.0, 12.0, 42.0, 50.0]])
    targets = [{"boxes": gt, "labels": torch.tensor([1])}]
    loss_fn = DetectionLoss(num_classes=2, reg_max=16)
    opt = torch.optim.SGD([cls, reg], lr=0.5)

    def best_iou():
        with torch.no_grad():
            return float(box_iou(decode_boxes(reg, points, strides, 16)[0], gt).max())

    first, iou_before = None, best_iou()
    for _ in range(60):
        out = loss_fn(cls, reg, points, strides, targets)
        if first is None:
            first = {k: float(v.detach()) for k, v in out.items()}
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    last = loss_fn(cls, reg, points, strides, targets)
    assert first["num_pos"] >= 1
    assert float(last["loss"].detach()) < 0.3 * first["loss"]
    assert float(last["dfl"]) < first["dfl"]
    assert best_iou() > iou_before
    # background classes were pushed down, the matched class less so
    probs = cls.detach().sigmoid()[0]
    assert probs[:, 0].max() < 0.25  # from 0.5


def test_schedule_warms_up_then_decays_to_the_floor():
    lrs = [learning_rate(i, 100, 0.1, warmup_iters=10, min_lr_ratio=0.05) for i in range(101)]
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.05) and lrs[10] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[100] == pytest.approx(0.005)
    assert scaled_lr(0.01, 16) == pytest.approx(0.0025)


def test_ema_ramp_and_tracking():
    model = nn.Linear(2, 1, bias=False)
    ema = ModelEMA(model, decay=0.9, ramp=1.0)
    with torch.no_grad():
        model.weight.fill_(1.0)
    start = ema.module.weight.clone()
    ema.update(model)
    d = 0.9 * (1 - math.exp(-1))
    assert torch.allclose(ema.module.weight, start * d + (1 - d))
    for _ in range(200):
        ema.update(model)
    assert torch.allclose(ema.module.weight, torch.ones(1, 2), atol=1e-6)


def test_weight_decay_skips_norms_and_biases_which_have_their_own_group():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1, bias=True))
    decay, norms, biases = parameter_groups(model, 5e-4)
    assert {p.shape for p in decay["params"]} == {torch.Size([4, 3, 3, 3]), torch.Size([4, 4, 1, 1])}
    assert len(norms["params"]) == 1  # the BN weight
    assert len(biases["params"]) == 3  # two conv biases and the BN bias
    assert norms["weight_decay"] == biases["weight_decay"] == 0.0
    assert [g["kind"] for g in (decay, norms, biases)] == ["weight", "norm", "bias"]


def test_a_decay_too_slow_for_the_run_is_warned_about(capsys):
    from tinynas.train.trainer import _warn_slow_ema
    _warn_slow_ema(0.9998, 360, "r.yaml")
    err = capsys.readouterr().err
    assert "r.yaml: warning: train.ema_decay 0.9998" in err and "360" in err
    _warn_slow_ema(0.99, 360, "r.yaml")
    assert capsys.readouterr().err == ""
