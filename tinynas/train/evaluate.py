"""Run a detector over a COCO split and score it with pycocotools."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..data.collate import make_loader
from ..data.pipeline import DetectionDataset
from ..data.transforms import Placement
from ..detect.input_layout import to_model_input
from ..detect.nms import multiclass_nms
from .coco_eval import coco_metrics


@torch.no_grad()
def predict_split(model: nn.Module, dataset: DetectionDataset, batch_size: int = 8, conf_threshold: float = 0.001,
                  iou_threshold: float = 0.7, max_detections: int = 100, device: torch.device | str = "cpu",
                  progress: bool = False) -> list[dict]:
    """COCO-format detections (original-image xywh, file category ids) for every image of ``dataset``."""
    was_training = model.training
    model.eval()
    loader = make_loader(dataset, batch_size, shuffle=False)
    category_ids = dataset.coco.category_ids
    results: list[dict] = []
    for images, targets in tqdm(loader, desc="eval", leave=False, disable=not progress):
        scores, boxes = model(to_model_input(images, device))
        for i, target in enumerate(targets):
            det = multiclass_nms(scores[i].float(), boxes[i].float(), conf_threshold, iou_threshold, max_detections)
            if det.boxes.numel() == 0:
                continue
            height, width = target["orig_size"]
            placement = Placement(target["scale"], *target["pad"], width=width, height=height)
            xyxy = placement.to_original(det.boxes.cpu().numpy()).astype(np.float64)
            for box, score, label in zip(xyxy, det.scores.tolist(), det.classes.tolist()):
                results.append({"image_id": int(target["image_id"]), "category_id": int(category_ids[label]),
                                "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])],
                                "score": float(score)})
    model.train(was_training)
    return results


def evaluate(model: nn.Module, dataset: DetectionDataset, **options) -> dict:
    """COCO metrics of ``model`` on ``dataset`` (see ``coco_metrics``)."""
    results = predict_split(model, dataset, **options)
    metrics = coco_metrics(dataset.coco.annotations, results)
    metrics["detections"] = len(results)
    return metrics
