"""The diagnostics of a run's best weights on its val split, as files in the run folder:
``pr_curve.png``, ``f1_curve.png``, ``confusion_matrix.png`` and ``val_predictions.jpg``
(the first val images, their boxes on the left, the detections kept at the F1-best confidence
on the right)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..atomic import atomic_write_bytes
from ..data.coco import CocoDataset
from ..detect.draw import draw_detections
from ..detect.nms import Detections
from ..memory import read_rgb
from .diagnostics import CONFIDENCES, CONFUSION_CONF, CONFUSION_IOU, Curves

DIAGNOSTIC_FILES = ("pr_curve.png", "f1_curve.png", "confusion_matrix.png", "val_predictions.jpg")
SHOWN_CLASSES = 10  # curves drawn one by one; more classes only add to the mean
SHOWN_IMAGES = 4
PANEL_SIDE = 480


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _png(fig) -> bytes:
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=90)
    _pyplot().close(fig)
    return image.getvalue()


def pr_figure(curves: Curves) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    for name, (recall, precision), ap in list(zip(curves.names, curves.pr_steps, curves.ap50))[:SHOWN_CLASSES]:
        ax.step(np.r_[0, recall], np.r_[1, precision], where="post", linewidth=1, label=f"{name} {ap:.3f}")
    if curves.names:
        ax.plot([], [], " ", label=f"mean AP50 {np.mean(curves.ap50):.3f}")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title="precision-recall at IoU 0.5 (AP50 by class)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    return _png(fig)


def f1_figure(curves: Curves) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    for name, f1 in list(zip(curves.names, curves.f1))[:SHOWN_CLASSES]:
        ax.plot(CONFIDENCES, f1, linewidth=1, label=name)
    if curves.names:
        mean = curves.f1.mean(axis=0)
        best = curves.best
        ax.plot(CONFIDENCES, mean, color="black", linewidth=2.5,
                label=f"all classes: F1 {mean[best]:.3f} at {CONFIDENCES[best]:.3f}")
        ax.axvline(CONFIDENCES[best], color="black", linestyle=":", linewidth=1)
    ax.set(xlabel="confidence", ylabel="F1", xlim=(0, 1), ylim=(0, 1.02), title="F1 against the confidence threshold")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    return _png(fig)


def confusion_figure(matrix: np.ndarray, names: Sequence[str]) -> bytes:
    """Columns are the true classes, each normalised to 1; the counts are written in the cells."""
    plt = _pyplot()
    labels = [*names, "background"]
    side = min(12.0, 4.5 + 0.5 * len(labels))
    fig, ax = plt.subplots(figsize=(side, side * 0.85))
    shares = matrix / np.maximum(matrix.sum(axis=0, keepdims=True), 1)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    if len(labels) <= 30:
        for (row, col), count in np.ndenumerate(matrix):
            if count:
                ax.text(col, row, str(count), ha="center", va="center", fontsize=8,
                        color="white" if shares[row, col] > 0.5 else "black")
    ticks = range(len(labels))
    ax.set_xticks(ticks, labels, rotation=90, fontsize=8)
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.set(xlabel="true", ylabel="predicted",
           title=f"confusion matrix\n(detections >= {CONFUSION_CONF}, IoU >= {CONFUSION_IOU})")
    fig.tight_layout()
    return _png(fig)


def predictions_figure(coco: CocoDataset, results: list[dict], conf: float, count: int = SHOWN_IMAGES) -> bytes:
    """The first ``count`` val images: boxes (left) beside the detections scoring >= ``conf`` (right)."""
    label_of = {cat: i for i, cat in enumerate(coco.category_ids)}
    rows = []
    for index in range(min(count, len(coco))):
        record = coco.records[index]
        image = read_rgb(coco.image_path(index))
        truth = Detections(torch.as_tensor(record.boxes, dtype=torch.float32).reshape(-1, 4),
                           torch.ones(len(record.labels)), torch.as_tensor(record.labels, dtype=torch.int64))
        found = [r for r in results if r["image_id"] == record.image_id and r["score"] >= conf]
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in found)]
        predicted = Detections(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                               torch.tensor([r["score"] for r in found], dtype=torch.float32),
                               torch.tensor([label_of[r["category_id"]] for r in found], dtype=torch.int64))
        rows.append([_panel(draw_detections(image, truth, coco.names, scores=False)),
                     _panel(draw_detections(image, predicted, coco.names))])
    sheet = Image.new("RGB", (2 * PANEL_SIDE, max(1, len(rows)) * PANEL_SIDE), (255, 255, 255))
    for r, (left, right) in enumerate(rows):
        sheet.paste(left, (0, r * PANEL_SIDE))
        sheet.paste(right, (PANEL_SIDE, r * PANEL_SIDE))
    out = io.BytesIO()
    sheet.save(out, format="JPEG", quality=90)
    return out.getvalue()


def _panel(image: Image.Image) -> Image.Image:
    scale = PANEL_SIDE / max(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BILINEAR)


def write_diagnostics(folder: Path, metrics: dict, coco: CocoDataset, results: list[dict]) -> list[Path]:
    """The four files into ``folder`` (atomically); ``metrics`` from ``coco_metrics(...,
    diagnostics=True)`` over ``results``."""
    curves = metrics["curves"]
    matrix, names = metrics["confusion"]
    conf = metrics["conf_F1"] if curves.names else CONFUSION_CONF
    contents = (pr_figure(curves), f1_figure(curves), confusion_figure(matrix, names),
                predictions_figure(coco, results, conf))
    paths = [folder / name for name in DIAGNOSTIC_FILES]
    for path, data in zip(paths, contents):
        atomic_write_bytes(path, data)
    return paths
