"""What a val split says beyond AP, for when AP is low: precision and recall at the confidence
that maximises F1, precision-recall and F1-confidence curves per class, and a confusion matrix
with a background row and column.

The curves come from pycocotools' own matching at IoU 0.5 over all areas (the AP50 matching:
crowd regions and their detections ignored), so P, R and the curves agree with AP50. The
confusion matrix matches across classes, as a user reading it expects: every detection at or
above ``CONFUSION_CONF`` is paired greedily by IoU (at least ``CONFUSION_IOU``) with the boxes
of any class, so a box found under the wrong class shows off the diagonal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONFIDENCES = np.linspace(0.0, 1.0, 1001)
CONFUSION_CONF = 0.25
CONFUSION_IOU = 0.45


@dataclass
class Curves:
    """Per class (rows) over ``CONFIDENCES``: precision, recall, F1; and each class's PR steps."""

    names: list[str]
    precision: np.ndarray  # [classes, confidences]
    recall: np.ndarray
    f1: np.ndarray
    pr_steps: list[tuple[np.ndarray, np.ndarray]]  # (recall, precision) per class, by falling score
    ap50: list[float]

    @property
    def best(self) -> int:
        """The confidence index where the mean F1 over the classes is highest; of equal ones the
        highest confidence (the threshold to deploy keeps the fewest detections for that F1)."""
        if not len(self.names):
            return 0
        mean = self.f1.mean(axis=0)
        return int(np.flatnonzero(mean >= mean.max() - 1e-12)[-1])

    def summary(self) -> dict:
        """P, R and F1 (means over the classes) at the confidence that maximises F1, and that confidence."""
        if not len(self.names):
            return {"P": 0.0, "R": 0.0, "F1": 0.0, "conf_F1": 0.0}
        i = self.best
        return {"P": float(self.precision[:, i].mean()), "R": float(self.recall[:, i].mean()),
                "F1": float(self.f1[:, i].mean()), "conf_F1": float(CONFIDENCES[i])}


def matched_at_iou50(ev) -> dict[int, tuple[np.ndarray, np.ndarray, int]]:
    """Per category id: the scores of its counted detections, whether each matched a box at IoU
    0.5, and its number of counted boxes, from an evaluated pycocotools ``COCOeval``."""
    p = ev.params
    t = int(np.argmin(np.abs(np.asarray(p.iouThrs) - 0.5)))
    images, areas = len(p.imgIds), len(p.areaRng)
    found = {}
    for k, cat in enumerate(p.catIds):
        scores, hits, boxes = [], [], 0
        for e in ev.evalImgs[k * areas * images:k * areas * images + images]:  # area range "all" comes first
            if e is None:
                continue
            counted = ~np.asarray(e["dtIgnore"][t], dtype=bool)
            scores.append(np.asarray(e["dtScores"], dtype=float)[counted])
            hits.append(np.asarray(e["dtMatches"][t])[counted] > 0)
            boxes += int((np.asarray(e["gtIgnore"]) == 0).sum())
        found[cat] = (np.concatenate(scores) if scores else np.zeros(0),
                      np.concatenate(hits) if hits else np.zeros(0, dtype=bool), boxes)
    return found


def curves(matched: dict[int, tuple[np.ndarray, np.ndarray, int]], names: dict[int, str]) -> Curves:
    """Precision, recall and F1 at every confidence of ``CONFIDENCES`` for each class with boxes:
    at confidence c, the detections scoring at least c."""
    kept = [cat for cat in matched if matched[cat][2] > 0]
    shape = (len(kept), len(CONFIDENCES))
    precision, recall = np.ones(shape), np.zeros(shape)
    steps, ap50 = [], []
    for row, cat in enumerate(kept):
        scores, hits, boxes = matched[cat]
        order = np.argsort(-scores, kind="mergesort")
        scores, hits = scores[order], hits[order]
        tp, fp = np.cumsum(hits), np.cumsum(~hits)
        rec, prec = tp / boxes, tp / np.maximum(tp + fp, 1)
        above = len(scores) - np.searchsorted(scores[::-1], CONFIDENCES, side="left")  # how many score >= c
        has = above > 0
        precision[row, has] = prec[above[has] - 1]
        recall[row, has] = rec[above[has] - 1]
        steps.append((rec, prec))
        ap50.append(_average_precision(rec, prec))
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return Curves([names[c] for c in kept], precision, recall, f1, steps, ap50)


def _average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """COCO's 101-point interpolated AP of one PR curve (precision made non-increasing)."""
    if not len(recall):
        return 0.0
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    points = np.searchsorted(recall, np.linspace(0, 1, 101), side="left")
    return float(np.mean([envelope[i] if i < len(envelope) else 0.0 for i in points]))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every xyxy box of ``a`` [N, 4] with every one of ``b`` [M, 4]."""
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-12)


def confusion_matrix(gt, dt, categories: list[int]) -> np.ndarray:
    """[predicted, true] counts over pycocotools ``gt`` and results ``dt``; index ``len(categories)``
    is the background: a missed box is (background, its class), a detection matching no box is
    (its class, background). Detections mostly on a crowd region are left out, as AP leaves them."""
    n = len(categories)
    index = {cat: i for i, cat in enumerate(categories)}
    matrix = np.zeros((n + 1, n + 1), dtype=np.int64)
    for image_id in gt.getImgIds():
        anns = gt.imgToAnns.get(image_id, [])
        boxes = np.array([_xyxy(a["bbox"]) for a in anns if not a.get("iscrowd")]).reshape(-1, 4)
        classes = [index[a["category_id"]] for a in anns if not a.get("iscrowd")]
        crowd = np.array([_xyxy(a["bbox"]) for a in anns if a.get("iscrowd")]).reshape(-1, 4)
        dets = [d for d in dt.imgToAnns.get(image_id, []) if d["score"] >= CONFUSION_CONF] if dt else []
        found = np.array([_xyxy(d["bbox"]) for d in dets]).reshape(-1, 4)
        predicted = [index[d["category_id"]] for d in dets]
        ious = box_iou(found, boxes)
        pairs = sorted(((ious[d, g], d, g) for d, g in zip(*np.nonzero(ious >= CONFUSION_IOU))), reverse=True)
        used_d, used_g = set(), set()
        for _, d, g in pairs:
            if d not in used_d and g not in used_g:
                used_d.add(d)
                used_g.add(g)
                matrix[predicted[d], classes[g]] += 1
        for g, cls in enumerate(classes):
            if g not in used_g:
                matrix[n, cls] += 1
        on_crowd = (box_iou(found, crowd) >= CONFUSION_IOU).any(axis=1) if len(crowd) else np.zeros(len(dets), bool)
        for d, cls in enumerate(predicted):
            if d not in used_d and not on_crowd[d]:
                matrix[cls, n] += 1
    return matrix


def _xyxy(bbox) -> list[float]:
    x, y, w, h = bbox
    return [x, y, x + w, y + h]
