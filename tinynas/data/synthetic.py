"""Small synthetic COCO datasets: filled shapes of a few classes on noisy backgrounds.

By default each class is one shape with its own base colour (jittered per object), so a
small detector can learn them in minutes on a CPU; this is what the training tests use.
``colour="random"`` paints every object a random colour instead, so classes differ only
by outline (a ring from a disc, a diamond from a square): a task on which capacity shows,
which the distillation benchmark needs. Objects never overlap, and each box is the exact
pixel extent of its drawn shape.

Layout written under ``out_dir``::

    images/train/000000.png ...   annotations/train.json
    images/val/000000.png ...     annotations/val.json
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from ..atomic import atomic_write_bytes, atomic_write_text
from ..errors import UserError
from ..runfolder import check_disk_space, check_new_folder, owned_folder

# Saturated base colours far from the muted backgrounds, and from each other.
SHAPES = {
    "rectangle": (220, 40, 40),
    "ellipse": (40, 200, 60),
    "triangle": (50, 80, 230),
    "diamond": (230, 200, 30),
    "cross": (200, 50, 210),
    "ring": (30, 200, 210),
}
DEFAULT_CLASSES = ("rectangle", "ellipse", "triangle")
COLOURS = ("class", "random")
MAX_SIZE = 8192  # the largest side a detector here is trained at, with room to spare


@dataclass(frozen=True)
class SyntheticDataset:
    root: Path
    train_images: Path
    train_annotations: Path
    val_images: Path
    val_annotations: Path
    classes: tuple[str, ...]


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], fill) -> None:
    x0, y0, x1, y1 = box
    if shape == "rectangle":
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=fill)
    elif shape == "ellipse":
        draw.ellipse((x0, y0, x1 - 1, y1 - 1), fill=fill)
    elif shape == "triangle":  # isosceles, standing on the box's bottom edge
        draw.polygon([((x0 + x1 - 1) / 2, y0), (x1 - 1, y1 - 1), (x0, y1 - 1)], fill=fill)
    elif shape == "diamond":
        cx, cy = (x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2
        draw.polygon([(cx, y0), (x1 - 1, cy), (cx, y1 - 1), (x0, cy)], fill=fill)
    elif shape == "cross":  # two bars a third of the box wide
        tw, th = max(2, (x1 - x0) // 3), max(2, (y1 - y0) // 3)
        cx, cy = x0 + (x1 - x0 - tw) // 2, y0 + (y1 - y0 - th) // 2
        draw.rectangle((cx, y0, cx + tw - 1, y1 - 1), fill=fill)
        draw.rectangle((x0, cy, x1 - 1, cy + th - 1), fill=fill)
    else:  # ring: an ellipse outline a fifth of the short side thick
        width = max(2, min(x1 - x0, y1 - y0) // 5)
        draw.ellipse((x0, y0, x1 - 1, y1 - 1), outline=fill, width=width)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    grey = rng.uniform(70, 190)
    tint = rng.uniform(-15, 15, 3)
    ramp = np.linspace(-1, 1, size)
    direction = rng.uniform(-25, 25, 2)
    gradient = direction[0] * ramp[None, :] + direction[1] * ramp[:, None]
    image = grey + tint[None, None, :] + gradient[:, :, None] + rng.normal(0, 6, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _colour(rng: np.random.Generator, shape: str, colour: str) -> tuple[int, ...]:
    if colour == "class":
        base = np.array(SHAPES[shape], dtype=np.float64)
        return tuple(int(c) for c in np.clip(base + rng.uniform(-30, 30, 3), 0, 255))
    # Random but never the muted grey of the backgrounds: one channel high, one low.
    rgb = rng.uniform(0, 255, 3)
    high, low = rng.permutation(3)[:2]
    rgb[high], rgb[low] = rng.uniform(200, 255), rng.uniform(0, 60)
    return tuple(int(c) for c in rgb)


def synth_image(rng: np.random.Generator, size: int, classes: Sequence[str],
                objects: tuple[int, int] = (1, 4), colour: str = "class",
                scale: tuple[float, float] = (0.15, 0.45)) -> tuple[np.ndarray, list[tuple[int, list[int]]]]:
    """One image and its objects as ``(class index, [x, y, w, h])`` with exact pixel boxes.

    ``scale`` bounds an object's side as a fraction of the image side.
    """
    image = Image.fromarray(_background(rng, size))
    draw = ImageDraw.Draw(image)
    wanted = int(rng.integers(objects[0], objects[1] + 1))
    placed: list[tuple[int, int, int, int]] = []
    found = []
    for _ in range(wanted * 20):  # rejection sampling; a crowded image just gets fewer objects
        if len(found) == wanted:
            break
        side = rng.uniform(*scale) * size
        aspect = rng.uniform(0.6, 1.6)
        w = max(6, int(side * np.sqrt(aspect)))
        h = max(6, int(side / np.sqrt(aspect)))
        if w >= size or h >= size:
            continue
        x0, y0 = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
        box = (x0, y0, x0 + w, y0 + h)
        if any(box[0] < b[2] + 2 and b[0] < box[2] + 2 and box[1] < b[3] + 2 and b[1] < box[3] + 2 for b in placed):
            continue
        cls = int(rng.integers(len(classes)))
        fill = _colour(rng, classes[cls], colour)
        mask = Image.new("L", (size, size), 0)
        _draw_shape(ImageDraw.Draw(mask), classes[cls], box, 255)
        _draw_shape(draw, classes[cls], box, fill)
        x0, y0, x1, y1 = mask.getbbox()
        placed.append(box)
        found.append((cls, [x0, y0, x1 - x0, y1 - y0]))
    return np.asarray(image, dtype=np.uint8), found


def most_objects(size: int, scale: tuple[float, float]) -> int:
    """How many objects of the smallest size ``synth_image`` draws fit on one image, side by side
    with the 2-pixel gap it keeps between them: no image can hold more."""
    side = scale[0] * size
    width, height = max(6, int(side * np.sqrt(0.6))), max(6, int(side / np.sqrt(1.6)))
    return max(1, (size // (width + 2)) * (size // (height + 2)))


def _write_split(folder: Path, annotations: Path, count: int, size: int, classes: Sequence[str],
                 objects: tuple[int, int], seed: int, split: int, progress: bool, colour: str,
                 scale: tuple[float, float]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in tqdm(range(count), desc=folder.name, unit="img", disable=None if progress else True):
        rng = np.random.default_rng([seed & 0xFFFFFFFF, split, i])
        pixels, found = synth_image(rng, size, classes, objects, colour, scale)
        name = f"{i:06d}.png"
        # Atomic: a training run may be reading the same deterministic files while they are rewritten.
        encoded = io.BytesIO()
        Image.fromarray(pixels).save(encoded, format="PNG")
        atomic_write_bytes(folder / name, encoded.getvalue())
        images.append({"id": i + 1, "file_name": name, "width": size, "height": size})
        for cls, (x, y, w, h) in found:
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cls + 1,
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    data = {
        "info": {"description": f"tinynas synthetic shapes, seed {seed}"},
        "images": images,
        "annotations": anns,
        "categories": [{"id": k + 1, "name": name, "supercategory": "shape"} for k, name in enumerate(classes)],
    }
    atomic_write_text(annotations, json.dumps(data, indent=1, allow_nan=False) + "\n")


def make_synthetic_dataset(out_dir: str | os.PathLike, images: int = 64, val_images: int = 16, size: int = 128,
                           classes: Sequence[str] = DEFAULT_CLASSES, objects: tuple[int, int] = (1, 4),
                           seed: int = 0, progress: bool = False, colour: str = "class",
                           scale: tuple[float, float] = (0.15, 0.45), force: bool = False) -> SyntheticDataset:
    """Write a train and a val split of synthetic shapes under ``out_dir``; same seed, same files.

    ``out_dir`` must be missing or empty unless ``force`` (then files of the same names are replaced).

    ``colour``: "class" (a base colour per class) or "random" (classes differ only by shape);
    ``scale``: the range of an object's side as a fraction of ``size``.
    """
    classes = tuple(classes)
    unknown = [c for c in classes if c not in SHAPES]
    if unknown:
        raise UserError("classes", unknown[0], f"unknown shape (choose from {', '.join(SHAPES)})")
    if not classes or len(set(classes)) != len(classes):
        raise UserError("classes", "", "expected distinct shape names")
    if images < 1 or val_images < 0:
        raise UserError("images", "", "need at least one training image and a non-negative val count")
    if not 32 <= size <= MAX_SIZE:
        raise UserError("size", "", f"images must be 32 to {MAX_SIZE} pixels, got {size}")
    if colour not in COLOURS:
        raise UserError("colour", colour, f"expected one of {', '.join(COLOURS)}")
    if not (0 < scale[0] <= scale[1] < 1):
        raise UserError("scale", "", f"expected 0 < min <= max < 1, got {tuple(scale)}")
    if not (1 <= objects[0] <= objects[1]):
        raise UserError("objects", "", f"expected 1 <= min <= max, got {objects}")
    most = most_objects(size, scale)
    if objects[1] > most:
        # Placement tries 20 spots per wanted object: past what fits, it would only spend time.
        raise UserError("objects", "", f"at most {most} objects fit on a {size} px image with scale "
                                       f"{scale[0]:g}..{scale[1]:g} (objects do not overlap); got {objects[1]}")
    root = Path(out_dir)
    result = SyntheticDataset(
        root=root,
        train_images=root / "images" / "train",
        train_annotations=root / "annotations" / "train.json",
        val_images=root / "images" / "val",
        val_annotations=root / "annotations" / "val.json",
        classes=classes,
    )
    check_new_folder(root, "OUT_DIR", force)
    # Noisy backgrounds barely compress: a PNG is about its raw RGB size.
    check_disk_space(root, (images + val_images) * size * size * 3, "OUT_DIR",
                     f"{images + val_images} images of {size}x{size}")
    with owned_folder(root, "dataset folder"):
        for folder, labels, count, split in ((result.train_images, result.train_annotations, images, 0),
                                             (result.val_images, result.val_annotations, val_images, 1)):
            _write_split(folder, labels, count, size, classes, objects, seed, split, progress, colour, scale)
    return result
