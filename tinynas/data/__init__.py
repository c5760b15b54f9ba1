"""Detection data: COCO-JSON datasets, augmentations, batching, dataset checks and converters.

Follow one example: ``CocoDataset[i]`` (raw ``Sample``) -> ``DetectionDataset`` (letterbox, or
mosaic/mixup/affine/flip/HSV when training) -> ``(image [3,S,S] in [0,1], target dict)`` ->
``collate_detection`` -> ``(images [B,3,S,S], [target, ...])``.
"""

from .cache import CACHE_MODES, cache_datasets
from .check import Problem, check_dataset, ensure_trainable, fatal_problems
from .coco import CocoDataset, ImageRecord, load_rgb, read_coco_json
from .collate import (EpochBatchSampler, EpochIndex, EpochSampler, collate_detection, make_loader, pad_targets,
                      set_loader_epoch)
from .convert import load_class_names, voc_to_coco, yolo_to_coco
from .mosaic import mixup, mosaic, mosaic_canvas
from .pipeline import AugmentConfig, DetectionDataset, item_rng, to_tensor
from .sample import Sample
from .synthetic import DEFAULT_CLASSES, SyntheticDataset, make_synthetic_dataset
from .transforms import (AffineRange, Placement, affine_matrix, hflip, hsv_jitter, letterbox, random_affine,
                         transform_boxes, warp_affine)

__all__ = [
    "AffineRange", "AugmentConfig", "CACHE_MODES", "CocoDataset", "DEFAULT_CLASSES", "DetectionDataset",
    "EpochBatchSampler", "EpochIndex", "EpochSampler", "ImageRecord", "Placement", "Problem", "Sample",
    "SyntheticDataset", "affine_matrix", "cache_datasets", "check_dataset", "collate_detection", "ensure_trainable", "fatal_problems", "hflip", "hsv_jitter", "item_rng", "letterbox",
    "load_class_names", "load_rgb", "make_loader", "make_synthetic_dataset", "mixup", "mosaic", "mosaic_canvas",
    "pad_targets", "random_affine", "read_coco_json", "set_loader_epoch", "to_tensor", "transform_boxes",
    "voc_to_coco", "warp_affine", "yolo_to_coco",
]
