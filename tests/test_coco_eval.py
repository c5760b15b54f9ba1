"""Our COCO metrics equal pycocotools' own numbers on a hand-made prediction file."""

import contextlib
import io
import json

import numpy as np
import pytest

from tinynas import UserError
from tinynas.train.coco_eval import coco_metrics, load_results


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    images, annotations, results = [], [], []
    ann_id = 1
    for image_id in range(1, 7):
        images.append({"id": image_id, "file_name": f"{image_id}.png", "width": 200, "height": 160})
        for _ in range(3):
            w, h = rng.uniform(8, 90, 2)
            x, y = rng.uniform(0, 200 - w), rng.uniform(0, 160 - h)
            cat = int(rng.integers(1, 4)) * 10  # ids 10, 20, 30: not contiguous on purpose
            annotations.append({"id": ann_id, "image_id": image_id, "category_id": cat, "bbox": [x, y, w, h],
                                "area": w * h, "iscrowd": 0})
            ann_id += 1
            # a near hit, a loose hit with the wrong class, and a miss
            jitter = rng.normal(0, 3, 4)
            results.append({"image_id": image_id, "category_id": cat, "bbox": list(np.array([x, y, w, h]) + jitter),
                            "score": float(rng.uniform(0.5, 1))})
            results.append({"image_id": image_id, "category_id": 10 if cat != 10 else 20,
                            "bbox": [x + 5, y + 5, w, h], "score": float(rng.uniform(0, 0.6))})
            results.append({"image_id": image_id, "category_id": cat, "bbox": [0, 0, 10, 10],
                            "score": float(rng.uniform(0, 0.3))})
    gt = {"images": images, "annotations": annotations,
          "categories": [{"id": 10, "name": "red"}, {"id": 20, "name": "green"}, {"id": 30, "name": "blue"}]}
    gt_path, res_path = tmp_path / "gt.json", tmp_path / "res.json"
    gt_path.write_text(json.dumps(gt))
    res_path.write_text(json.dumps([{**r, "bbox": [float(v) for v in r["bbox"]]} for r in results]))
    return gt_path, res_path


def test_metrics_equal_pycocotools(files):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_path, res_path = files
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        ev = COCOeval(gt, gt.loadRes(str(res_path)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    ours = coco_metrics(gt_path, load_results(res_path))
    assert [ours[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")] == pytest.approx(list(ev.stats[:6]))
    assert 0.3 < ours["AP50"] <= 1.0
    # Per-class AP averages to the overall AP when every class has ground truth.
    assert np.mean(list(ours["per_class"].values())) == pytest.approx(ours["AP"])
    assert set(ours["per_class"]) == {"red", "green", "blue"}


def _crowded_scene(rng, images: int) -> tuple[dict, list[dict]]:
    """Dense boxes of every COCO area range, crowds, exact duplicate boxes (tied IoUs), and
    clusters of detections around them with many ties in score: every branch of the matching."""
    doc = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    results = []
    for image_id in range(1, images + 1):
        doc["images"].append({"id": image_id, "file_name": f"{image_id}.png", "width": 400, "height": 400})
        boxes = []
        for _ in range(int(rng.integers(0, 40))):
            w, h = np.exp(rng.uniform(np.log(4), np.log(200), 2))
            boxes.append([float(rng.uniform(0, 400 - w)), float(rng.uniform(0, 400 - h)), float(w), float(h)])
        boxes += boxes[: len(boxes) // 8]  # duplicates
        for box in boxes:
            doc["annotations"].append({"id": len(doc["annotations"]) + 1, "image_id": image_id,
                                       "category_id": int(rng.integers(1, 3)), "bbox": box, "area": box[2] * box[3],
                                       "iscrowd": int(rng.random() < 0.08)})
        for _ in range(int(rng.integers(0, 140))):
            x, y, w, h = boxes[int(rng.integers(len(boxes)))] if boxes and rng.random() < 0.8 else [50.0, 50.0, 30.0, 30.0]
            jitter = rng.normal(0, 0.15 * min(w, h) + 1, 4)
            results.append({"image_id": image_id, "category_id": int(rng.integers(1, 3)),
                            "bbox": [float(x + jitter[0]), float(y + jitter[1]), float(abs(w + jitter[2]) + 1),
                                     float(abs(h + jitter[3]) + 1)],
                            "score": float(np.round(rng.random(), 1 if rng.random() < 0.3 else 6))})
    return doc, results


def test_the_vectorised_matching_equals_pycocotools_entry_for_entry(tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from tinynas.train.coco_matching import MatchedCOCOeval

    rng = np.random.default_rng(7)
    for scene in range(3):
        doc, results = _crowded_scene(rng, images=6)
        path = tmp_path / f"gt{scene}.json"
        path.write_text(json.dumps(doc))
        runs = []
        for evaluator in (COCOeval, MatchedCOCOeval):
            with contextlib.redirect_stdout(io.StringIO()):
                gt = COCO(str(path))
                ev = evaluator(gt, gt.loadRes(results), "bbox")
                ev.params.useCats = scene != 2  # class-agnostic matching too
                ev.evaluate()
                ev.accumulate()
                ev.summarize()
            runs.append(ev)
        theirs, ours = runs
        assert len(ours.evalImgs) == len(theirs.evalImgs)
        for a, b in zip(theirs.evalImgs, ours.evalImgs):
            assert (a is None) == (b is None)
            if a is not None:
                assert a.keys() == b.keys()
                for key in a:
                    assert np.array_equal(np.asarray(a[key]), np.asarray(b[key])), key
        assert np.array_equal(ours.stats, theirs.stats)
        assert np.array_equal(ours.eval["precision"], theirs.eval["precision"])
        assert theirs.stats[1] > 0.1  # matches were made: the scenes test something


def test_empty_results_score_zero(files):
    gt_path, _ = files
    assert coco_metrics(gt_path, [])["AP"] == 0.0


def test_bad_results_file(tmp_path):
    bad = tmp_path / "r.json"
    bad.write_text('[{"image_id": 1}]')
    with pytest.raises(UserError, match=r"\[0\]: a detection needs"):
        load_results(bad)
