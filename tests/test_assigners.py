"""SimOTA and TAL on small scenes whose costs, choices and targets are worked out by hand below.

The scene: two boxes side by side, g0 = [0, 32] (class 0) and g1 = [16, 48] (class 1) in x, both
[0, 32] in y; seven anchors on the line y = 16 at x = 4, 12, 20, 28, 36, 44 and 60, stride 8.
Every predicted box spans y in [0, 32] too, so an IoU is the overlap of x-intervals over their
union. The IoUs, from the x-intervals (a0 [0, 20], a1 [0, 24], a2 [6, 40], a3 [16, 44],
a4 [22, 48], a5 [28, 52], a6 [50, 70]):

    anchor   a0     a1    a2     a3     a4     a5     a6
    g0      20/32  24/32 26/40  16/44  10/48   4/52   0
    g1       4/48   8/48 24/42  28/32  26/32  20/36   0
"""

import math

import pytest
import torch

from tinynas.detect.nms import box_iou
from tinynas.errors import UserError
from tinynas.train.assigner import AlignOTAAssigner
from tinynas.train.assigners import (ASSIGNERS, ScoredAssignment, SimOTAAssigner, TaskAlignedAssigner,
                                     class_target, create_assigner, get_assigner)
from tinynas.train.assigners.simota import dynamic_k

GT_BOXES = torch.tensor([[0.0, 0.0, 32.0, 32.0], [16.0, 0.0, 48.0, 32.0]])
GT_LABELS = torch.tensor([0, 1])
POINT_X = [4.0, 12.0, 20.0, 28.0, 36.0, 44.0, 60.0]
PRED_X = [(0, 20), (0, 24), (6, 40), (16, 44), (22, 48), (28, 52), (50, 70)]
IOU = [  # the table above, by box then anchor
    [20 / 32, 24 / 32, 26 / 40, 16 / 44, 10 / 48, 4 / 52, 0.0],
    [4 / 48, 8 / 48, 24 / 42, 28 / 32, 26 / 32, 20 / 36, 0.0],
]


def scene(probs):
    points = torch.tensor([[x, 16.0] for x in POINT_X])
    strides = torch.full((len(POINT_X),), 8.0)
    boxes = torch.tensor([[x1, 0.0, x2, 32.0] for x1, x2 in PRED_X])
    return torch.tensor(probs), boxes, points, strides, GT_BOXES, GT_LABELS


def test_the_scene_ious_are_the_table():
    _, boxes, *_ = scene([[0.5, 0.5]] * 7)
    assert torch.allclose(box_iou(GT_BOXES, boxes), torch.tensor(IOU), atol=1e-6)


# ---- SimOTA -------------------------------------------------------------------------------------

def test_simota_dynamic_k_sums_the_ten_best_ious_and_never_drops_below_one():
    twelve = torch.full((12, 1), 0.35)
    assert dynamic_k(twelve, 10).item() == 3  # 10 x 0.35 = 3.5 (all twelve would give 4.2 -> 4)
    assert dynamic_k(torch.full((5, 1), 0.05), 10).item() == 1  # int(0.25) = 0, raised to 1
    # The scene's candidates are a0..a5 (a6 is neither inside a box nor within 2.5 strides of a
    # centre), fewer than ten, so k is the int of the sum of their IoUs.
    sums = [sum(IOU[g][:6]) for g in (0, 1)]
    assert [int(s) for s in sums] == [2, 3]  # 2.67 and 3.06
    candidates = torch.tensor(IOU)[:, :6].T
    assert dynamic_k(candidates, 10).tolist() == [2, 3]


def test_simota_class_cost_is_bce_against_the_one_hot_summed_over_classes():
    probs = torch.tensor([[0.2, 0.7, 0.4]])
    cost = SimOTAAssigner().class_cost(probs, torch.tensor([1, 2]))
    for_class_1 = -math.log(1 - 0.2) - math.log(0.7) - math.log(1 - 0.4)
    for_class_2 = -math.log(1 - 0.2) - math.log(1 - 0.7) - math.log(0.4)
    assert cost[0].tolist() == pytest.approx([for_class_1, for_class_2], rel=1e-5)


def test_simota_matches_the_cheapest_k_and_resolves_a_conflict_by_cost():
    # Equal class scores make every class cost the same (2 ln 2), so each box ranks the anchors of
    # its prior by IoU. Priors (inside and within 20 px of the centre): g0 {a0..a3}, g1 {a2..a5}.
    # g0 (k = 2) takes a1 (0.75) and a2 (0.65); g1 (k = 3) takes a3 (0.875), a4 (0.8125), a2 (0.571).
    # a2 is claimed twice; 3 * -ln(0.65) = 1.29 < 3 * -ln(0.571) = 1.68, so it stays with g0 and
    # g1 keeps two anchors.
    cost_g0 = 2 * math.log(2) + 3 * -math.log(IOU[0][2])
    cost_g1 = 2 * math.log(2) + 3 * -math.log(IOU[1][2])
    assert cost_g0 < cost_g1
    result = SimOTAAssigner().assign(*scene([[0.5, 0.5]] * 7))
    assert result.gt_index.tolist() == [-1, 0, 0, 1, 1, -1, -1]
    expected_iou = [0.0, IOU[0][1], IOU[0][2], IOU[1][3], IOU[1][4], 0.0, 0.0]
    assert result.ious.tolist() == pytest.approx(expected_iou, abs=1e-6)
    assert torch.equal(result.quality, result.ious)  # SimOTA's class target is the IoU


def test_simota_class_scores_can_move_an_anchor_to_the_other_box():
    # a2 believes in class 1 (p = 0.05 / 0.95): its cost for g0 is 2 ln 2 -> -ln 0.05 - ln 0.05
    # higher by far than for g1 (-ln 0.95 - ln 0.95), which outweighs the 0.39 IoU-cost gap.
    probs = [[0.5, 0.5]] * 7
    probs[2] = [0.05, 0.95]
    cost_g0 = -math.log(0.05) - math.log(0.05) + 3 * -math.log(IOU[0][2])
    cost_g1 = -math.log(0.95) - math.log(0.95) + 3 * -math.log(IOU[1][2])
    assert cost_g1 < cost_g0
    # g0 now ranks a2 behind a0 (2 ln 2 + 3 * 0.47 = 2.80), so it takes a1 and a0; g1 takes a3,
    # a4 and a2, and no anchor is claimed twice.
    assert 2 * math.log(2) + 3 * -math.log(IOU[0][0]) < cost_g0
    result = SimOTAAssigner().assign(*scene(probs))
    assert result.gt_index.tolist() == [0, 0, 1, 1, 1, -1, -1]


def test_simota_outside_every_prior_or_without_boxes_is_background():
    probs, boxes, points, strides, _, _ = scene([[0.5, 0.5]] * 7)
    far = torch.tensor([[500.0, 500.0, 540.0, 540.0]])
    none = SimOTAAssigner().assign(probs, boxes, points, strides, far, torch.tensor([0]))
    assert none.gt_index.tolist() == [-1] * 7
    empty = SimOTAAssigner().assign(probs, boxes, points, strides, torch.zeros(0, 4),
                                    torch.zeros(0, dtype=torch.long))
    assert empty.gt_index.tolist() == [-1] * 7
    assert empty.ious.abs().sum() == 0 and empty.quality.abs().sum() == 0


# ---- TAL ----------------------------------------------------------------------------------------

TAL_PROBS = [[0.6, 0.1], [0.3, 0.1], [0.8, 0.9], [0.2, 0.5], [0.1, 0.6], [0.1, 0.9], [0.5, 0.5]]


def test_tal_takes_the_top_aligned_inside_each_box_and_normalises_per_box():
    # Inside g0 (0 < x < 32): a0..a3; inside g1 (16 < x < 48): a2..a5; a6 is inside neither.
    # Alignment t = s * u^6 with s the probability of the box's class.
    t0 = [TAL_PROBS[a][0] * IOU[0][a] ** 6 for a in range(4)]  # 0.0358, 0.0534, 0.0603, 0.0005
    t1 = {a: TAL_PROBS[a][1] * IOU[1][a] ** 6 for a in range(2, 6)}  # 0.0313, 0.2244, 0.1725, 0.0265
    # top 3: g0 takes a2, a1, a0; g1 takes a3, a4, a2. a2 is claimed twice and goes to g0, whose
    # IoU with it (0.65) beats g1's (0.571).
    assert sorted(range(4), key=lambda a: -t0[a])[:3] == [2, 1, 0]
    assert sorted(t1, key=lambda a: -t1[a])[:3] == [3, 4, 2]
    assert IOU[0][2] > IOU[1][2]
    result = TaskAlignedAssigner(topk=3).assign(*scene(TAL_PROBS))
    assert result.gt_index.tolist() == [0, 0, 0, 1, 1, -1, -1]
    # Targets: t * (box's best IoU among its positives) / (box's best t among its positives).
    # g0: best t is a2's, best IoU a1's (0.75): a2's target is 0.75, not its own IoU of 0.65.
    g0 = [t0[a] * IOU[0][1] / t0[2] for a in (0, 1, 2)]
    g1 = [t1[a] * IOU[1][3] / t1[3] for a in (3, 4)]
    assert result.quality.tolist() == pytest.approx(g0 + g1 + [0.0, 0.0], abs=1e-6)
    assert result.quality[2].item() == pytest.approx(0.75, abs=1e-6)
    expected_iou = [IOU[0][0], IOU[0][1], IOU[0][2], IOU[1][3], IOU[1][4], 0.0, 0.0]
    assert result.ious.tolist() == pytest.approx(expected_iou, abs=1e-6)


def test_tal_default_top_13_takes_every_anchor_inside_when_fewer():
    # Four anchors inside each box, fewer than 13: all of them, and the shared a2 and a3 go to the
    # higher IoU: a2 to g0 (0.65 > 0.571), a3 to g1 (0.875 > 0.364).
    result = TaskAlignedAssigner().assign(*scene(TAL_PROBS))
    assert result.gt_index.tolist() == [0, 0, 0, 1, 1, 1, -1]
    t0 = [TAL_PROBS[a][0] * IOU[0][a] ** 6 for a in (0, 1, 2)]
    t1 = [TAL_PROBS[a][1] * IOU[1][a] ** 6 for a in (3, 4, 5)]
    expected = [t * 0.75 / max(t0) for t in t0] + [t * IOU[1][3] / max(t1) for t in t1] + [0.0]
    assert result.quality.tolist() == pytest.approx(expected, abs=1e-6)


def test_tal_conflict_never_hands_an_anchor_to_a_box_that_did_not_take_it():
    # One anchor at x = 20, inside g0 and g1 but not g2 = [22, 40]. Its prediction [21, 40]
    # overlaps g2 most (18/19), g1 next (19/32), g0 least (11/40). It goes to g1, the best of the
    # boxes that took it. (YOLOv6's code picks the highest IoU over all boxes, g2 here.)
    gt = torch.tensor([[0.0, 0.0, 32.0, 32.0], [16.0, 0.0, 48.0, 32.0], [22.0, 0.0, 40.0, 32.0]])
    result = TaskAlignedAssigner().assign(torch.tensor([[0.5, 0.5, 0.5]]), torch.tensor([[21.0, 0.0, 40.0, 32.0]]),
                                          torch.tensor([[20.0, 16.0]]), torch.tensor([8.0]), gt,
                                          torch.tensor([0, 1, 2]))
    assert result.gt_index.tolist() == [1]
    assert result.ious.item() == pytest.approx(19 / 32, abs=1e-6)
    assert result.quality.item() == pytest.approx(19 / 32, abs=1e-6)  # its box's only positive


def test_tal_without_boxes_is_all_background():
    probs, boxes, points, strides, _, _ = scene(TAL_PROBS)
    result = TaskAlignedAssigner().assign(probs, boxes, points, strides, torch.zeros(0, 4),
                                          torch.zeros(0, dtype=torch.long))
    assert result.gt_index.tolist() == [-1] * 7
    assert result.quality.abs().sum() == 0


# ---- registry -----------------------------------------------------------------------------------

def test_registry_names_every_assigner_with_the_same_call():
    assert set(ASSIGNERS) == {"alignota", "simota", "tal"}
    assert get_assigner("alignota") is AlignOTAAssigner
    inputs = scene(TAL_PROBS)
    for name in ASSIGNERS:
        result = create_assigner(name).assign(*inputs)
        positive = result.positive
        assert positive.any(), name
        # every positive is inside the box it was given (a property all three priors share here)
        x = torch.tensor(POINT_X)[positive]
        box = GT_BOXES[result.gt_index[positive]]
        assert ((x > box[:, 0]) & (x < box[:, 2])).all(), name
        assert (class_target(result)[~positive] == 0).all(), name
    assert isinstance(create_assigner("tal", topk=3).assign(*inputs), ScoredAssignment)
    with pytest.raises(UserError, match="train.assigner.*'atss'.*alignota, simota, tal"):
        get_assigner("atss")


# ---- AlignOTA's class cost ------------------------------------------------------------------------

def literal_quality_focal_cost(probs, gt_labels, ious):
    """DAMO-YOLO's cost as written there: the [K, G, C] tensor of per-class terms, summed."""
    import torch.nn.functional as F
    soft = F.one_hot(gt_labels, probs.shape[1]).float()[None] * ious[..., None]
    prob = probs[:, None, :].expand_as(soft).clamp(1e-6, 1 - 1e-6)
    return (F.binary_cross_entropy(prob, soft, reduction="none") * (soft - prob).abs().pow(2)).sum(-1)


@pytest.mark.parametrize("classes", [1, 3, 80])
def test_alignota_class_cost_equals_the_literal_sum_over_classes(classes):
    from tinynas.train.assigner import quality_focal_cost
    gen = torch.Generator().manual_seed(classes)
    probs = torch.rand(300, classes, generator=gen)
    probs[:10] = torch.tensor([0.0, 1.0])[torch.randint(0, 2, (10, classes), generator=gen)]  # the clamp's ends
    labels = torch.randint(0, classes, (7,), generator=gen)
    ious = torch.rand(300, 7, generator=gen)
    ious[:, 0] = 0.0
    fast, literal = quality_focal_cost(probs, labels, ious), literal_quality_focal_cost(probs, labels, ious)
    assert fast.shape == (300, 7)
    assert torch.allclose(fast, literal, rtol=1e-5, atol=1e-5)


def test_alignota_assigns_as_with_the_literal_cost(monkeypatch):
    import tinynas.train.assigner as module
    gen = torch.Generator().manual_seed(0)
    side = torch.arange(4.0, 320.0, 8.0)
    points = torch.stack(torch.meshgrid(side, side, indexing="xy"), -1).reshape(-1, 2)
    strides = torch.full((len(points),), 8.0)
    for _ in range(5):
        corners = torch.rand(12, 2, generator=gen) * 240
        gt = torch.cat([corners, corners + 16 + torch.rand(12, 2, generator=gen) * 64], 1)
        labels = torch.randint(0, 80, (12,), generator=gen)
        scores = torch.rand(len(points), 80, generator=gen)
        jitter = (torch.rand(len(points), 4, generator=gen) - 0.5) * 24
        boxes = torch.cat([points - 12, points + 12], 1) + jitter
        fast = AlignOTAAssigner().assign(scores, boxes, points, strides, gt, labels)
        with monkeypatch.context() as patch:
            patch.setattr(module, "quality_focal_cost", literal_quality_focal_cost)
            literal = AlignOTAAssigner().assign(scores, boxes, points, strides, gt, labels)
        assert fast.positive.sum() > 12
        assert torch.equal(fast.gt_index, literal.gt_index) and torch.equal(fast.ious, literal.ious)
