"""COCO mAP through pycocotools (its matching vectorised: coco_matching.py), plus per-class AP."""

from __future__ import annotations

import contextlib
import io
import os


from ..errors import UserError
from ..fileio import read_json

SUMMARY_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _quiet():
    # pycocotools prints progress to stdout; the caller decides what to show.
    return contextlib.redirect_stdout(io.StringIO())


def load_results(path: str | os.PathLike) -> list[dict]:
    source = str(path)
    data = read_json(path, "results file")
    if not isinstance(data, list):
        raise UserError(source, "", "a COCO results file is a list of detections")
    for i, det in enumerate(data):
        if not isinstance(det, dict) or not {"image_id", "category_id", "bbox", "score"} <= set(det):
            raise UserError(source, f"[{i}]", "a detection needs image_id, category_id, bbox and score")
    return data


def coco_metrics(annotations: str | os.PathLike, results: list[dict], diagnostics: bool = False) -> dict:
    """AP, AP50, AP75, APs, APm, APl (0..1), ``per_class`` {name: AP} for bbox results, and P, R,
    F1 at ``conf_F1``, the confidence that maximises F1 (``diagnostics.py``). With
    ``diagnostics``, also ``curves`` (``diagnostics.Curves``) and ``confusion`` (the matrix and
    the class names in its order, background last).

    ``results`` uses the annotation file's category ids and xywh boxes in original pixels.
    An empty result list scores 0 everywhere (pycocotools refuses to load one).
    """
    from pycocotools.coco import COCO

    from .coco_matching import MatchedCOCOeval  # pycocotools' numbers, its matching loop vectorised
    from .diagnostics import confusion_matrix, curves, matched_at_iou50

    with _quiet():
        gt = COCO(str(annotations))
    names = {c["id"]: c["name"] for c in gt.loadCats(gt.getCatIds())}
    if not results:
        metrics = {**{k: 0.0 for k in SUMMARY_NAMES}, "per_class": {n: 0.0 for n in names.values()},
                   "P": 0.0, "R": 0.0, "F1": 0.0, "conf_F1": 0.0}
        if diagnostics:
            metrics["curves"] = curves({}, names)
            metrics["confusion"] = (confusion_matrix(gt, None, list(names)), list(names.values()))
        return metrics
    with _quiet():
        dt = gt.loadRes(results)
        ev = MatchedCOCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    metrics = {name: float(ev.stats[i]) for i, name in enumerate(SUMMARY_NAMES)}
    # precision: [IoU thresholds, recall points, categories, area ranges, max dets]
    precision = ev.eval["precision"]
    per_class = {}
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        per_class[names[cat_id]] = float(p.mean()) if p.size else float("nan")
    metrics["per_class"] = per_class
    found = curves(matched_at_iou50(ev), names)
    metrics.update(found.summary())
    if diagnostics:
        metrics["curves"] = found
        metrics["confusion"] = (confusion_matrix(gt, dt, list(ev.params.catIds)),
                                [names[c] for c in ev.params.catIds])
    return metrics
