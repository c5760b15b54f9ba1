"""A tiny detector recipe over a synthetic dataset, shared by training and distillation tests."""

from pathlib import Path

import yaml

from tinynas.data import make_synthetic_dataset

TINY_ARCH = [
    {"class": "ConvKXBNRELU", "in": 3, "out": 16, "s": 1, "k": 3},
    {"class": "SuperResK1KX", "in": 16, "out": 24, "s": 2, "k": 3, "L": 1, "btn": 16},
    {"class": "SuperResK1KX", "in": 24, "out": 48, "s": 2, "k": 3, "L": 1, "btn": 24},
    {"class": "SuperResK1KX", "in": 48, "out": 64, "s": 2, "k": 3, "L": 1, "btn": 32},
    {"class": "SuperResK1KX", "in": 64, "out": 64, "s": 1, "k": 3, "L": 1, "btn": 32},
    {"class": "SuperResK1KX", "in": 64, "out": 128, "s": 2, "k": 3, "L": 1, "btn": 64},
]


def synthetic(root: Path, images: int, val_images: int, size: int, seed: int = 0):
    return make_synthetic_dataset(root, images=images, val_images=val_images, size=size, seed=seed)


def tiny_recipe(data, out: Path, size: int, epochs: int, **train) -> dict:
    return {
        "name": "tiny",
        "backbone": {"arch": TINY_ARCH, "wrap": "res", "out_indices": [2, 4, 5], "focus": True, "spp": True,
                     "act": "relu", "reparam": True},
        "neck": {"depth": 1.0, "hidden_ratio": 1.0, "out_channels": [32, 64, 128], "act": "relu"},
        "head": {"num_classes": len(data.classes), "reg_max": 16, "strides": [8, 16, 32]},
        "data": {"train_images": str(data.train_images), "train_annotations": str(data.train_annotations),
                 "val_images": str(data.val_images), "val_annotations": str(data.val_annotations), "size": size},
        "train": {"epochs": epochs, "batch_size": 16, "lr_per_64": 0.08, "warmup_epochs": 1, "ema_ramp": 50.0,
                  **train},
        "augment": {"no_aug_epochs": max(1, epochs // 6)},
        "out": str(out),
    }


def write_recipe(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
