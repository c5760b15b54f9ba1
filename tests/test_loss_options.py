"""Class and box loss options against their papers' formulas, evaluated step by step with math."""

import math

import pytest
import torch

from tinynas.detect.anchors import anchor_points
from tinynas.errors import UserError
from tinynas.train.box_losses import BOX_LOSSES, ciou_loss, get_box_loss, giou_loss, siou_loss
from tinynas.train.cls_losses import CLS_LOSSES, bce_loss, get_cls_loss, varifocal_loss
from tinynas.train.composed_loss import ComposedDetectionLoss, LossOptions, check_loss_options
from tinynas.train.losses import DetectionLoss, LossWeights, quality_focal_loss


def logit(p):
    return math.log(p / (1 - p))


# ---- class losses -------------------------------------------------------------------------------

def test_varifocal_loss_weights_positives_by_their_target_and_focuses_negatives():
    # A positive p = 0.8 with target IoU q = 0.6, a negative p = 0.3 (q = 0).
    logits = torch.tensor([logit(0.8), logit(0.3)], dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([0.6, 0.0], dtype=torch.float64)
    loss = varifocal_loss(logits, targets)
    positive = -0.6 * (0.6 * math.log(0.8) + 0.4 * math.log(0.2))
    negative = -0.75 * 0.3 ** 2 * math.log(1 - 0.3)
    assert loss.tolist() == pytest.approx([positive, negative], rel=1e-9)
    loss.sum().backward()
    # d/dz of q * BCE(p, q) is q (p - q); of -a p^g log(1 - p) it is a (p^(g+1) - g p^g (1 - p) log(1 - p)).
    grad_positive = 0.6 * (0.8 - 0.6)
    grad_negative = 0.75 * (0.3 ** 3 - 2 * 0.3 ** 2 * 0.7 * math.log(0.7))
    assert logits.grad.tolist() == pytest.approx([grad_positive, grad_negative], rel=1e-9)
    assert grad_negative > 0  # a negative is pushed down


def test_varifocal_loss_is_asymmetric_unlike_qfl():
    # A confident negative costs VFL 0.75 x QFL (same p^2 BCE, times alpha); a positive is not
    # down-weighted by its error as in QFL but scaled by its target.
    z = torch.tensor([logit(0.9)], dtype=torch.float64)
    assert varifocal_loss(z, torch.zeros(1, dtype=torch.float64)).item() == pytest.approx(
        0.75 * quality_focal_loss(z, torch.zeros(1, dtype=torch.float64)).item(), rel=1e-9)
    q = torch.tensor([0.9], dtype=torch.float64)  # p equals its target: QFL is 0, VFL is not
    assert quality_focal_loss(z, q).item() == pytest.approx(0.0, abs=1e-12)
    assert varifocal_loss(z, q).item() == pytest.approx(-0.9 * (0.9 * math.log(0.9) + 0.1 * math.log(0.1)),
                                                        rel=1e-9)


def test_bce_loss_against_soft_targets():
    z = torch.tensor([logit(0.8), logit(0.3)], dtype=torch.float64)
    expected = [-(0.6 * math.log(0.8) + 0.4 * math.log(0.2)), -math.log(0.7)]
    assert bce_loss(z, torch.tensor([0.6, 0.0], dtype=torch.float64)).tolist() == pytest.approx(expected, rel=1e-9)


# ---- box losses ---------------------------------------------------------------------------------

def boxes(*rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_giou_loss_by_hand():
    # [0, 2]^2 and [1, 3]^2: intersection 1, union 7, enclosing box 9.
    assert giou_loss(boxes([0, 0, 2, 2]), boxes([1, 1, 3, 3])).item() == pytest.approx(1 - (1 / 7 - 2 / 9))


def test_ciou_loss_by_hand():
    # pred [0, 0, 4, 2] (4 x 2), target [1, 1, 3, 5] (2 x 4).
    inter = (3 - 1) * (2 - 1)
    iou = inter / (8 + 8 - inter)  # 1/7
    rho2 = (2 - 2) ** 2 + (1 - 3) ** 2  # centres (2, 1) and (2, 3)
    c2 = (4 - 0) ** 2 + (5 - 0) ** 2  # enclosing box [0, 0, 4, 5]
    v = 4 / math.pi ** 2 * (math.atan(2 / 4) - math.atan(4 / 2)) ** 2
    alpha = v / (1 - iou + v)
    expected = 1 - iou + rho2 / c2 + alpha * v
    assert ciou_loss(boxes([0, 0, 4, 2]), boxes([1, 1, 3, 5])).item() == pytest.approx(expected, rel=1e-6)


def siou_by_the_paper(p, t, theta=4.0):
    """SIoU loss of two xyxy boxes, following the paper's steps literally."""
    wp, hp, wt, ht = p[2] - p[0], p[3] - p[1], t[2] - t[0], t[3] - t[1]
    inter = max(0, min(p[2], t[2]) - max(p[0], t[0])) * max(0, min(p[3], t[3]) - max(p[1], t[1]))
    iou = inter / (wp * hp + wt * ht - inter)
    dx = (t[0] + t[2]) / 2 - (p[0] + p[2]) / 2
    dy = (t[1] + t[3]) / 2 - (p[1] + p[3]) / 2
    sigma = math.hypot(dx, dy)
    alpha = math.asin(abs(dy) / sigma)
    if alpha > math.pi / 4:  # the paper minimises beta = pi/2 - alpha instead
        alpha = math.pi / 2 - alpha
    angle = 1 - 2 * math.sin(alpha - math.pi / 4) ** 2
    cw = max(p[2], t[2]) - min(p[0], t[0])
    ch = max(p[3], t[3]) - min(p[1], t[1])
    gamma = 2 - angle
    distance = (1 - math.exp(-gamma * (dx / cw) ** 2)) + (1 - math.exp(-gamma * (dy / ch) ** 2))
    omega_w, omega_h = abs(wp - wt) / max(wp, wt), abs(hp - ht) / max(hp, ht)
    shape = (1 - math.exp(-omega_w)) ** theta + (1 - math.exp(-omega_h)) ** theta
    return 1 - iou + (distance + shape) / 2


@pytest.mark.parametrize("pred, target", [
    ([0, 0, 4, 4], [2, 1, 8, 4]),  # centre line 9 degrees off the x axis
    ([0, 0, 2, 2], [0.5, 3, 2.5, 6]),  # 82 degrees: the paper's beta branch
    ([10, 10, 20, 30], [12, 13, 24, 33]),  # 45 degrees (centres 3 right, 3 down): the largest angle cost
])
def test_siou_loss_by_the_papers_steps(pred, target):
    expected = siou_by_the_paper(pred, target)
    assert siou_loss(boxes(pred), boxes(target)).item() == pytest.approx(expected, rel=1e-6)


def test_siou_first_pair_term_by_term():
    # pred [0, 0, 4, 4], target [2, 1, 8, 4]: intersection 2 x 3, union 16 + 18 - 6.
    iou = 6 / 28
    dx, dy = 3.0, 0.5  # centres (2, 2) and (5, 2.5)
    angle = 1 - 2 * math.sin(math.asin(0.5 / math.hypot(3, 0.5)) - math.pi / 4) ** 2
    distance = 2 - math.exp(-(2 - angle) * (dx / 8) ** 2) - math.exp(-(2 - angle) * (dy / 4) ** 2)
    shape = (1 - math.exp(-2 / 6)) ** 4 + (1 - math.exp(-1 / 4)) ** 4
    assert siou_loss(boxes([0, 0, 4, 4]), boxes([2, 1, 8, 4])).item() == pytest.approx(
        1 - iou + (distance + shape) / 2, rel=1e-6)


@pytest.mark.parametrize("name", sorted(BOX_LOSSES))
def test_box_losses_vanish_on_a_perfect_box_with_finite_gradients(name):
    pred = boxes([3, 4, 10, 20]).requires_grad_()
    loss = get_box_loss(name)(pred, boxes([3, 4, 10, 20]))
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    loss.sum().backward()
    assert torch.isfinite(pred.grad).all()


@pytest.mark.parametrize("name", sorted(BOX_LOSSES))
def test_box_losses_pull_a_shifted_box_back(name):
    # The prediction sits 3 px right of and 1 px below its target: moving it left and up lowers
    # the loss, so the gradient on x1, x2 and y1, y2 is positive.
    target = boxes([10, 10, 30, 40])
    pred = (target + torch.tensor([3.0, 1.0, 3.0, 1.0], dtype=torch.float64)).requires_grad_()
    get_box_loss(name)(pred, target).sum().backward()
    assert (pred.grad > 0).all(), pred.grad
    # and a prediction that is too narrow is widened: x1 wants to go left, x2 right
    narrow = boxes([14, 10, 26, 40]).requires_grad_()
    get_box_loss(name)(narrow, target).sum().backward()
    assert narrow.grad[0, 0] > 0 and narrow.grad[0, 2] < 0


def test_registries_and_unknown_names():
    assert set(CLS_LOSSES) == {"qfl", "vfl", "bce"} and set(BOX_LOSSES) == {"giou", "ciou", "siou"}
    assert get_cls_loss("vfl") is varifocal_loss
    with pytest.raises(UserError, match="train.cls_loss.*'focal'"):
        get_cls_loss("focal")
    message = r"recipe.yaml: train.box_loss: unknown box loss 'diou' \(known: giou, ciou, siou\)"
    with pytest.raises(UserError, match=message):
        check_loss_options(LossOptions(box_loss="diou"), "recipe.yaml")
    with pytest.raises(UserError, match="recipe.yaml: train.dfl"):
        check_loss_options(LossOptions(dfl="yes"), "recipe.yaml")
    chosen = LossOptions("tal", "vfl", "siou", False)
    assert check_loss_options(chosen, "r.yaml") is chosen


# ---- the assembled loss -------------------------------------------------------------------------

NUM_CLASSES, REG_MAX = 3, 16


def batch(seed=0):
    torch.manual_seed(seed)
    points, strides = anchor_points([(8, 8), (4, 4)], [8, 16])
    cls_logits = torch.randn(2, len(points), NUM_CLASSES, requires_grad=True)
    reg_logits = torch.randn(2, len(points), 4 * (REG_MAX + 1), requires_grad=True)
    targets = [{"boxes": torch.tensor([[5.0, 6.0, 40.0, 50.0], [20.0, 10.0, 60.0, 30.0]]),
                "labels": torch.tensor([0, 2])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    return cls_logits, reg_logits, points, strides, targets


def test_default_options_are_todays_loss():
    inputs = batch()
    today = DetectionLoss(NUM_CLASSES, REG_MAX)(*inputs)
    composed = ComposedDetectionLoss(NUM_CLASSES, REG_MAX)(*inputs)
    assert set(composed) == set(today)
    for key in today:
        assert composed[key].item() == pytest.approx(today[key].item(), rel=1e-6), key


def test_dfl_off_leaves_class_and_box_terms_only():
    inputs = batch()
    on = ComposedDetectionLoss(NUM_CLASSES, REG_MAX, LossOptions(box_loss="ciou"))(*inputs)
    off = ComposedDetectionLoss(NUM_CLASSES, REG_MAX, LossOptions(box_loss="ciou", dfl=False))(*inputs)
    w = LossWeights()
    assert off["dfl"].item() == 0.0 and on["dfl"].item() > 0
    assert off["ciou"].item() == pytest.approx(on["ciou"].item())
    assert off["loss"].item() == pytest.approx(w.qfl * off["qfl"].item() + w.giou * off["ciou"].item())
    assert on["loss"].item() == pytest.approx(off["loss"].item() + w.dfl * on["dfl"].item())
    # without DFL the distributions still learn, through the box loss on their expectation
    grad = torch.autograd.grad(off["loss"], inputs[1])[0]
    assert torch.isfinite(grad).all() and grad[0].abs().sum() > 0


@pytest.mark.parametrize("assigner", ["alignota", "simota", "tal"])
@pytest.mark.parametrize("cls_loss, box_loss", [("vfl", "siou"), ("bce", "ciou"), ("qfl", "giou")])
def test_every_combination_trains_and_an_empty_image_is_background(assigner, cls_loss, box_loss):
    cls_logits, reg_logits, points, strides, targets = batch()
    options = LossOptions(assigner, cls_loss, box_loss)
    out = ComposedDetectionLoss(NUM_CLASSES, REG_MAX, options)(cls_logits, reg_logits, points, strides, targets)
    assert set(out) == {"loss", cls_loss, box_loss, "dfl", "num_pos"} and out["num_pos"] > 0
    cls_grad, reg_grad = torch.autograd.grad(out["loss"], [cls_logits, reg_logits])
    assert torch.isfinite(cls_grad).all() and torch.isfinite(reg_grad).all()
    # The second image has no boxes: every class score there is pushed down, its boxes get nothing.
    assert (cls_grad[1] > 0).all()
    assert reg_grad[1].abs().sum() == 0
    assert reg_grad[0].abs().sum() > 0


@pytest.mark.parametrize("cls_loss", ["qfl", "vfl", "bce"])
def test_a_batch_without_boxes_costs_the_background_loss_of_every_score(cls_loss):
    # Logits 0 (p = 1/2) everywhere and no boxes: no positives, the class loss divides by 1 and is
    # the sum over anchors and classes of the background loss at p = 1/2.
    points, strides = anchor_points([(4, 4)], [8])
    cls_logits = torch.zeros(2, len(points), NUM_CLASSES, requires_grad=True)
    reg_logits = torch.zeros(2, len(points), 4 * (REG_MAX + 1), requires_grad=True)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    out = ComposedDetectionLoss(NUM_CLASSES, REG_MAX, LossOptions("tal", cls_loss, "siou"))(
        cls_logits, reg_logits, points, strides, [empty, empty])
    per_score = {"qfl": 0.5 ** 2 * math.log(2), "vfl": 0.75 * 0.5 ** 2 * math.log(2), "bce": math.log(2)}[cls_loss]
    assert out[cls_loss].item() == pytest.approx(2 * 16 * NUM_CLASSES * per_score, rel=1e-6)
    assert out["num_pos"].item() == 0 and out["siou"].item() == 0 and out["dfl"].item() == 0
    out["loss"].backward()
    assert (cls_logits.grad > 0).all() and reg_logits.grad.abs().sum() == 0
