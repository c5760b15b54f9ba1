"""pycocotools' COCOeval with its per-image matching done over all IoU thresholds at once.

``COCOeval.evaluateImg`` matches detections to ground truth in three nested Python loops
(thresholds x detections x boxes): on a dense val split evaluated every epoch (a dozen tiles,
~35 boxes and 100 detections each, 4 area ranges) that was most of the metric's CPU time. Here
the detections are still visited one by one, best score first (a match takes a box away from the
ones after it), but each visit decides all ten thresholds and all boxes with array operations.
The result is pycocotools' own, entry for entry (tests/test_coco_eval.py compares them):

- a box is a candidate when it is unmatched at that threshold (or a crowd) and its IoU is at least
  the threshold (``min(t, 1 - 1e-10)``);
- the not-ignored boxes come first: the match is the last of them with the highest IoU, and the
  ignored boxes are searched, the same way, only when none of those is a candidate.
"""

from __future__ import annotations

import numpy as np
from pycocotools.cocoeval import COCOeval


def _last_best(candidates: np.ndarray, ious: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``candidates [T, G]``: whether any is a candidate, and the last column holding
    the highest IoU among them."""
    scored = np.where(candidates, ious[None, :], -np.inf)
    last = scored.shape[1] - 1 - np.argmax(scored[:, ::-1], axis=1)
    return candidates.any(axis=1), last


class MatchedCOCOeval(COCOeval):
    def evaluateImg(self, imgId, catId, aRng, maxDet):  # noqa: N802, N803 (pycocotools' names)
        p = self.params
        if p.useCats:
            gt, dt = self._gts[imgId, catId], self._dts[imgId, catId]
        else:
            gt = [g for cat in p.catIds for g in self._gts[imgId, cat]]
            dt = [d for cat in p.catIds for d in self._dts[imgId, cat]]
        if len(gt) == 0 and len(dt) == 0:
            return None
        for g in gt:
            g["_ignore"] = int(bool(g["ignore"]) or g["area"] < aRng[0] or g["area"] > aRng[1])
        gt_order = np.argsort([g["_ignore"] for g in gt], kind="mergesort")
        gt = [gt[i] for i in gt_order]
        dt_order = np.argsort([-d["score"] for d in dt], kind="mergesort")
        dt = [dt[i] for i in dt_order[0:maxDet]]
        ious = self.ious[imgId, catId]
        ious = ious[:, gt_order] if len(ious) > 0 else ious

        thresholds = np.minimum(np.asarray(p.iouThrs, dtype=float), 1 - 1e-10)[:, None]
        T, G, D = len(p.iouThrs), len(gt), len(dt)
        gt_matches, dt_matches, dt_ignore = np.zeros((T, G)), np.zeros((T, D)), np.zeros((T, D))
        gt_ignore = np.array([g["_ignore"] for g in gt])
        if len(ious) != 0:
            crowd = np.array([bool(g["iscrowd"]) for g in gt], dtype=bool)
            regular = gt_ignore == 0
            gt_ids = np.array([g["id"] for g in gt], dtype=float)
            for d_index, d in enumerate(dt):
                row = ious[d_index]
                candidates = ((gt_matches == 0) | crowd) & (row[None, :] >= thresholds)
                found, match = _last_best(candidates & regular, row)
                found_ignored, match_ignored = _last_best(candidates & ~regular, row)
                match = np.where(found, match, match_ignored)
                at = np.flatnonzero(found | found_ignored)
                dt_ignore[at, d_index] = gt_ignore[match[at]]
                dt_matches[at, d_index] = gt_ids[match[at]]
                gt_matches[at, match[at]] = d["id"]
        outside = np.array([d["area"] < aRng[0] or d["area"] > aRng[1] for d in dt]).reshape((1, D))
        dt_ignore = np.logical_or(dt_ignore, np.logical_and(dt_matches == 0, np.repeat(outside, T, 0)))
        return {
            "image_id": imgId, "category_id": catId, "aRng": aRng, "maxDet": maxDet,
            "dtIds": [d["id"] for d in dt], "gtIds": [g["id"] for g in gt],
            "dtMatches": dt_matches, "gtMatches": gt_matches, "dtScores": [d["score"] for d in dt],
            "gtIgnore": gt_ignore, "dtIgnore": dt_ignore,
        }
