"""Diagnostics beyond AP: P, R and F1 at the F1-best confidence (from pycocotools' IoU-0.5
matching), per-class curves, a cross-class confusion matrix with background, and the files a
finished run writes."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from tinynas.train.coco_eval import coco_metrics
from tinynas.train.diagnostic_plots import DIAGNOSTIC_FILES, PANEL_SIDE
from tinynas.train.diagnostics import CONFIDENCES
from tinynas.train.recipe import parse_train_recipe
from tinynas.train.trainer import train

from train_helpers import synthetic, tiny_recipe


def _image(image_id):
    return {"id": image_id, "file_name": f"{image_id}.png", "width": 100, "height": 100}


def _box(box_id, image_id, category, bbox, crowd=0):
    return {"id": box_id, "image_id": image_id, "category_id": category, "bbox": bbox,
            "area": bbox[2] * bbox[3], "iscrowd": crowd}


@pytest.fixture
def two_classes(tmp_path):
    """Three trees and a car in two images, a crowd region of trees."""
    gt = {"images": [_image(1), _image(2)],
          "categories": [{"id": 7, "name": "tree"}, {"id": 9, "name": "car"}],
          "annotations": [_box(1, 1, 7, [10, 10, 20, 20]), _box(2, 1, 7, [50, 50, 20, 20]),
                          _box(3, 2, 7, [10, 10, 30, 30]), _box(4, 2, 9, [60, 60, 30, 30]),
                          _box(5, 2, 7, [0, 50, 40, 40], crowd=1)]}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    return path


def _det(image_id, category, bbox, score):
    return {"image_id": image_id, "category_id": category, "bbox": bbox, "score": score}


def test_precision_recall_and_f1_are_taken_where_the_mean_f1_peaks(two_classes):
    dets = [_det(1, 7, [10, 10, 20, 20], 0.9),   # tree: hit
            _det(1, 7, [80, 0, 10, 10], 0.8),    # tree: no box there
            _det(2, 7, [11, 11, 30, 30], 0.6),   # tree: hit
            _det(2, 7, [2, 52, 36, 36], 0.7),    # on the crowd region: not counted
            _det(2, 9, [60, 60, 30, 30], 0.5)]   # car: hit
    m = coco_metrics(two_classes, dets, diagnostics=True)
    curves = m["curves"]
    assert curves.names == ["tree", "car"]
    # tree at c <= 0.6: 2 hits of 3 detections, 2 of 3 boxes; car at c <= 0.5: 1 of 1, 1 of 1.
    # The mean F1 is highest (2/3 + 1) / 2 for every c <= 0.5: the highest such is taken.
    assert m["conf_F1"] == 0.5
    assert (m["P"], m["R"], m["F1"]) == pytest.approx(((2 / 3 + 1) / 2, (2 / 3 + 1) / 2, (2 / 3 + 1) / 2))
    tree = curves.names.index("tree")
    at = {c: int(np.argmin(np.abs(CONFIDENCES - c))) for c in (0.85, 0.75, 0.95)}
    assert curves.precision[tree, at[0.85]] == 1.0 and curves.recall[tree, at[0.85]] == pytest.approx(1 / 3)
    assert curves.precision[tree, at[0.75]] == 0.5  # the crowd detection at 0.7 is not counted
    assert curves.precision[tree, at[0.95]] == 1.0 and curves.recall[tree, at[0.95]] == 0.0  # none kept
    # Each class's AP50 from its curve is pycocotools' per-class AP at IoU 0.5.
    assert curves.ap50 == pytest.approx([(34 + 33 * 2 / 3) / 101, 1.0])


def test_the_confusion_matrix_crosses_classes_and_counts_misses_and_false_alarms(two_classes):
    dets = [_det(1, 9, [10, 10, 20, 20], 0.9),   # a tree called a car
            _det(1, 7, [80, 0, 10, 10], 0.8),    # a tree where there is nothing
            _det(2, 7, [11, 11, 30, 30], 0.6),   # a tree found
            _det(2, 7, [2, 52, 36, 36], 0.7),    # on the crowd region: left out
            _det(2, 9, [60, 60, 30, 30], 0.2)]   # the car, under the matrix's confidence
    matrix, names = coco_metrics(two_classes, dets, diagnostics=True)["confusion"]
    assert names == ["tree", "car"]
    # rows predicted, columns true: tree, car, background
    assert matrix.tolist() == [[1, 0, 1],
                               [1, 0, 0],
                               [1, 1, 0]]


def test_no_detections_score_zero_with_empty_curves(two_classes):
    m = coco_metrics(two_classes, [], diagnostics=True)
    assert (m["P"], m["R"], m["F1"]) == (0.0, 0.0, 0.0)
    assert m["confusion"][0].tolist() == [[0, 0, 0], [0, 0, 0], [3, 1, 0]]


def test_a_finished_run_writes_its_diagnostics_and_logs_precision_and_recall(tmp_path):
    data = synthetic(tmp_path / "data", images=16, val_images=4, size=64, seed=4)
    train(parse_train_recipe(tiny_recipe(data, tmp_path / "run", 64, epochs=2, batch_size=8)), progress=False)
    run = tmp_path / "run"
    for name in DIAGNOSTIC_FILES:
        with Image.open(run / name) as image:
            image.verify()
    with Image.open(run / "val_predictions.jpg") as sheet:
        assert sheet.size == (2 * PANEL_SIDE, 4 * PANEL_SIDE)  # 4 val images, labels | predictions
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert {"P", "R", "F1", "conf_F1"} <= set(rows[-1]) and 0.0 <= float(rows[-1]["R"]) <= 1.0
    # A run stopped early writes none; its resume to the end does.
    train(parse_train_recipe(tiny_recipe(data, tmp_path / "part", 64, epochs=2, batch_size=8)), stop_after=1,
          progress=False)
    assert not any((tmp_path / "part" / name).exists() for name in DIAGNOSTIC_FILES)
