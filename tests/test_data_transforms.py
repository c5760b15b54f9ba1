"""Augmentations keep boxes on their objects: every transformed box is compared with the
bounding box of the transformed pixels of a uniquely coloured filled rectangle."""

import numpy as np
import pytest

from tinynas.data import (AffineRange, Sample, affine_matrix, hflip, hsv_jitter, letterbox, mixup, mosaic,
                          mosaic_canvas, random_affine, transform_boxes, warp_affine)
from tinynas.data.transforms import PAD_VALUE

PALETTE = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255),
           (255, 255, 255), (0, 0, 0)]
GREY = np.array([PAD_VALUE] * 3, dtype=np.float64)
MIN_SIDE = 20  # below this, rounding the edges to whole pixels alone can cost 10% IoU
TINY = 5  # a box this thin may be all blur, with no pixel past halfway to its colour


def rect_sample(width, height, rects, labels, image_id=0):
    image = np.full((height, width, 3), PAD_VALUE, dtype=np.uint8)
    for (x0, y0, x1, y1), label in zip(rects, labels):
        image[y0:y1, x0:x1] = PALETTE[label]
    return Sample(image=image, boxes=np.array(rects, dtype=np.float32).reshape(-1, 4),
                  labels=np.array(labels, dtype=np.int64), image_id=image_id)


def pixel_box(image, label, coverage=0.5):
    """xyxy box of the pixels blended at least ``coverage`` of the way from grey to the label's colour."""
    colour = np.array(PALETTE[label], dtype=np.float64)
    distance = np.linalg.norm(image.astype(np.float64) - colour, axis=-1)
    mask = distance < (1 - coverage) * np.linalg.norm(colour - GREY)
    if not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def assert_boxes_on_pixels(sample, labels_present, min_iou=0.9):
    """Each big-enough box matches its pixels; each big object well inside the frame has a box.
    Returns how many boxes were compared, so callers can make sure the check was not empty."""
    assert len(set(sample.labels.tolist())) == len(sample.labels), "a colour appears twice"
    compared = 0
    for box, label in zip(sample.boxes, sample.labels):
        side = min(box[2] - box[0], box[3] - box[1])
        if side < TINY:
            continue
        found = pixel_box(sample.image, int(label))
        assert found is not None, f"box {box} of label {label} has no pixels"
        if side >= MIN_SIDE:
            assert iou(box, found) >= min_iou, f"label {label}: box {box} vs pixels {found}"
            compared += 1
        # Every box, small ones too: it holds the pixels mostly of its colour and stays within
        # those touched by it at all (a thin sliver's tip is only ever partly covered).
        halo = pixel_box(sample.image, int(label), coverage=0.05)
        assert (box[:2] <= found[:2] + 1).all() and (box[2:] >= found[2:] - 1).all(), f"{box} misses {found}"
        assert (box[:2] >= halo[:2] - 1).all() and (box[2:] <= halo[2:] + 1).all(), f"{box} beyond {halo}"
    h, w = sample.image.shape[:2]
    for label in labels_present:
        if label in sample.labels:
            continue
        found = pixel_box(sample.image, label)
        if found is None:
            continue
        touches_border = found[0] <= 0 or found[1] <= 0 or found[2] >= w or found[3] >= h
        big = min(found[2] - found[0], found[3] - found[1]) >= 16
        assert touches_border or not big, f"label {label} visible at {found} but its box was dropped"
    return compared


RECTS = [(10, 12, 50, 40), (70, 20, 120, 60), (20, 70, 60, 118), (90, 80, 150, 110)]


@pytest.mark.parametrize("degrees, scale, shear, shift", [
    (0.0, 1.0, 0.0, (0, 0)),
    (30.0, 0.8, 0.0, (0, 0)),
    (-20.0, 1.3, 5.0, (10, -6)),
    (45.0, 0.6, 0.0, (0, 0)),
    (8.0, 1.7, 2.0, (-20, 15)),
])
def test_affine_boxes_match_transformed_pixels(degrees, scale, shear, shift):
    sample = rect_sample(160, 128, RECTS, [0, 1, 2, 3])
    matrix = affine_matrix((160, 128), (144, 144), degrees=degrees, scale=scale, shear_x=shear,
                           shear_y=-shear / 2, translate_x=shift[0], translate_y=shift[1])
    out = warp_affine(sample, matrix, (144, 144))
    assert out.image.shape == (144, 144, 3)
    assert assert_boxes_on_pixels(out, [0, 1, 2, 3]) >= 2


def test_rotated_box_is_bbox_of_rotated_corners():
    box = np.array([[10, 20, 50, 40]], dtype=np.float32)
    matrix = affine_matrix((100, 100), (100, 100), degrees=90)
    # 90 degrees about the centre (50, 50): x' = y, y' = 100 - x on screen (y down).
    np.testing.assert_allclose(transform_boxes(box, matrix), [[20, 50, 40, 90]], atol=1e-4)


@pytest.mark.parametrize("seed", range(8))
def test_random_affine_keeps_boxes(seed):
    sample = rect_sample(160, 128, RECTS, [4, 5, 6, 7])
    ranges = AffineRange(degrees=10, translate=0.2, scale=(0.5, 1.5), shear=2.0)
    out = random_affine(sample, np.random.default_rng(seed), (128, 128), ranges)
    assert_boxes_on_pixels(out, [4, 5, 6, 7])


def test_flip_keeps_boxes_exactly():
    sample = rect_sample(160, 128, RECTS, [0, 1, 2, 3])
    out = hflip(sample)
    for box, label in zip(out.boxes, out.labels):
        np.testing.assert_array_equal(box, pixel_box(out.image, int(label)))
    np.testing.assert_array_equal(hflip(out).image, sample.image)


def mosaic_inputs():
    # Four different sizes and aspect ratios, two rectangles each, eight distinct colours.
    return [
        rect_sample(200, 150, [(20, 20, 90, 80), (110, 60, 190, 140)], [0, 1], image_id=1),
        rect_sample(120, 160, [(10, 10, 60, 70), (50, 90, 110, 150)], [2, 3], image_id=2),
        rect_sample(128, 128, [(30, 30, 100, 70), (10, 80, 60, 120)], [4, 5], image_id=3),
        rect_sample(180, 90, [(5, 5, 80, 60), (100, 20, 170, 85)], [6, 7], image_id=4),
    ]


@pytest.mark.parametrize("seed", range(4))
def test_mosaic_canvas_boxes_are_exact(seed):
    canvas = mosaic_canvas(mosaic_inputs(), np.random.default_rng(seed), 128)
    assert canvas.image.shape == (256, 256, 3)
    assert canvas.image_id == 1
    assert assert_boxes_on_pixels(canvas, list(range(8)), min_iou=0.95) >= 4


@pytest.mark.parametrize("seed", range(10))
def test_mosaic_keeps_boxes(seed):
    out = mosaic(mosaic_inputs(), np.random.default_rng(seed), 128, AffineRange())
    assert out.image.shape == (128, 128, 3)
    assert_boxes_on_pixels(out, list(range(8)))


def test_mosaic_checks_are_not_empty():
    compared = sum(assert_boxes_on_pixels(mosaic(mosaic_inputs(), np.random.default_rng(s), 128,
                                                 AffineRange(scale=(0.8, 1.2))), list(range(8)))
                   for s in range(4))
    assert compared >= 8


def test_mixup_blends_images_and_keeps_all_boxes():
    a = rect_sample(96, 96, [(10, 10, 40, 40)], [0])
    b = rect_sample(96, 96, [(50, 50, 90, 80)], [1])
    out = mixup(a, b, np.random.default_rng(0))
    assert out.boxes.tolist() == [[10, 10, 40, 40], [50, 50, 90, 80]]
    assert out.labels.tolist() == [0, 1]
    red_in_a = out.image[20, 20].astype(float)
    # Beta(32, 32) keeps the weight near 0.5: the red square is a red/grey blend.
    weight = (red_in_a[0] - PAD_VALUE) / (255 - PAD_VALUE)
    assert 0.25 < weight < 0.75
    with pytest.raises(ValueError):
        mixup(a, rect_sample(64, 64, [], []), np.random.default_rng(0))


def test_letterbox_places_and_maps_back():
    sample = rect_sample(200, 100, [(20, 10, 80, 60), (120, 30, 190, 95)], [0, 1])
    out, placement = letterbox(sample, 128)
    assert out.image.shape == (128, 128, 3)
    assert placement.scale == pytest.approx(0.64)
    assert (placement.pad_x, placement.pad_y) == (0, 32)
    for box, label in zip(out.boxes, out.labels):
        assert iou(box, pixel_box(out.image, int(label))) >= 0.9
    np.testing.assert_allclose(placement.to_original(out.boxes), sample.boxes, atol=1.0)


def test_hsv_jitter_changes_colours_not_boxes():
    sample = rect_sample(64, 64, [(10, 10, 40, 40)], [0])
    same = hsv_jitter(sample, np.random.default_rng(0), 0, 0, 0)
    assert same is sample
    out = hsv_jitter(sample, np.random.default_rng(3), 0.1, 0.7, 0.4)
    assert not np.array_equal(out.image, sample.image)
    np.testing.assert_array_equal(out.boxes, sample.boxes)
    again = hsv_jitter(sample, np.random.default_rng(3), 0.1, 0.7, 0.4)
    np.testing.assert_array_equal(out.image, again.image)


def test_crowd_regions_follow_the_geometry():
    sample = rect_sample(100, 100, [(10, 10, 30, 30)], [0]).with_(
        ignore=np.array([[60, 60, 90, 80]], dtype=np.float32))
    np.testing.assert_array_equal(hflip(sample).ignore, [[10, 60, 40, 80]])
    out, _ = letterbox(sample, 50)
    np.testing.assert_allclose(out.ignore, [[30, 30, 45, 40]])


def test_box_cut_by_the_frame_is_the_visible_part_of_its_quadrilateral():
    # A 40 x 40 square centred on the left border (0, 50), turned 45 degrees: a diamond whose
    # right half is visible. Cut through its widest point, the visible box is the full height.
    square = np.array([[-20, 30, 20, 70]], dtype=np.float32)
    turn = affine_matrix((0, 100), (0, 100), degrees=45)  # about (0, 50), no shift
    half = 20 * np.sqrt(2)
    np.testing.assert_allclose(transform_boxes(square, turn, (100, 100)), [[0, 50 - half, half, 50 + half]],
                               atol=1e-4)
    shifted = affine_matrix((0, 100), (0, 100), degrees=45, translate_x=-20)
    # Shifted left by 20, only the tip shows: a triangle of height 2 (half - 20), where clipping
    # the corner box would have kept the diamond's full height 2 half.
    np.testing.assert_allclose(transform_boxes(square, shifted, (100, 100)),
                               [[0, 50 - (half - 20), half - 20, 50 + (half - 20)]], atol=1e-4)
    assert transform_boxes(square, affine_matrix((0, 100), (0, 100), translate_x=-40), (100, 100))[0, 2] == 0
