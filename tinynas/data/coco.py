"""COCO-JSON detection datasets: the annotation index and the raw (unaugmented) examples.

Category ids are mapped to contiguous labels ``0..K-1`` in ascending id order, and the
category names are kept in that order so a checkpoint can carry them. Images without
annotations are kept (they teach the background). Crowd boxes (``iscrowd: 1``) are not
training targets; they are kept apart as ignore regions. Boxes are returned as ``xyxy``
float32 pixels, clipped to the image; boxes left with no width or height are dropped
(``tinynas data check`` reports them).

Decoded images can be kept in memory (``cache_decoded``): on a small dataset decoding is a
large share of the data time, and workers forked after the cache is filled share its pixels.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import UserError
from ..memory import open_image, rgb_image
from ..fileio import read_json
from .sample import EMPTY_BOXES, EMPTY_LABELS, Sample
from .transforms import fitted_size, shrink_to_fit


def read_coco_json(path: str | os.PathLike) -> dict:
    """The parsed annotation file, with its three top-level lists present."""
    source = str(path)
    data = read_json(path, "annotation file")
    if not isinstance(data, dict):
        raise UserError(source, "", "expected a COCO object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise UserError(source, key, "missing")
        if not isinstance(data[key], list):
            raise UserError(source, key, "expected a list")
    return data


@dataclass(frozen=True, eq=False)
class ImageRecord:
    """One image of the annotation file, its boxes already in training form."""

    image_id: int
    file_name: str
    width: int
    height: int
    boxes: np.ndarray  # float32 [N, 4] xyxy pixels
    labels: np.ndarray  # int64 [N] contiguous labels
    ignore: np.ndarray  # float32 [M, 4] crowd boxes, xyxy pixels


def _is_id(value) -> bool:
    """An integer as JSON writes one (``true`` is not 1 here)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value, source: str, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(source, field, f"expected a number, got {value!r}")
    return float(value)


def _bbox_xyxy(ann: dict, width: int, height: int, source: str, field: str) -> np.ndarray | None:
    bbox = ann.get("bbox")
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise UserError(source, f"{field}.bbox", f"expected [x, y, width, height], got {bbox!r}")
    x, y, w, h = (_number(v, source, f"{field}.bbox") for v in bbox)
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise UserError(source, f"{field}.bbox", f"expected finite numbers, got {bbox!r}")
    x0, y0 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    x1, y1 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        return None
    return np.array([x0, y0, x1, y1], dtype=np.float32)


class CocoDataset:
    """The annotation index of one COCO-JSON file plus the folder its images live in.

    ``dataset[i]`` is the raw :class:`Sample` of image ``i`` (no resize, no augmentation);
    ``names[label]`` is the category name of a contiguous label and
    ``category_ids[label]`` its id in the file (what a COCO results file must use).
    """

    def __init__(self, annotations: str | os.PathLike, images_dir: str | os.PathLike):
        self.annotations = Path(annotations)
        self.images_dir = Path(images_dir)
        data = read_coco_json(self.annotations)
        self.category_ids, self.names = self._categories(data["categories"])
        self.records = self._records(data)
        self.annotation_count = len(data["annotations"])
        self._decoded: dict[tuple[int, int | None], np.ndarray] = {}

    def __getstate__(self) -> dict:
        # A worker started by pickling (spawn, forkserver) decodes for itself rather than
        # receiving a private copy of every cached image.
        return {**self.__dict__, "_decoded": {}}

    def _categories(self, categories: list) -> tuple[tuple[int, ...], tuple[str, ...]]:
        source = str(self.annotations)
        by_id: dict[int, str] = {}
        for i, cat in enumerate(categories):
            field = f"categories[{i}]"
            if not isinstance(cat, dict) or not isinstance(cat.get("id"), int) or isinstance(cat.get("id"), bool):
                raise UserError(source, f"{field}.id", "expected an integer category id")
            if cat["id"] in by_id:
                raise UserError(source, f"{field}.id", f"duplicate category id {cat['id']}")
            by_id[cat["id"]] = str(cat.get("name", cat["id"]))
        if not by_id:
            raise UserError(source, "categories", "no categories")
        ids = tuple(sorted(by_id))
        return ids, tuple(by_id[i] for i in ids)

    def _records(self, data: dict) -> tuple[ImageRecord, ...]:
        source = str(self.annotations)
        label_of = {cid: label for label, cid in enumerate(self.category_ids)}
        images: dict[int, dict] = {}
        for i, img in enumerate(data["images"]):
            field = f"images[{i}]"
            if not isinstance(img, dict):
                raise UserError(source, field, "expected an object")
            image_id = img.get("id")
            if not isinstance(image_id, int) or isinstance(image_id, bool):
                raise UserError(source, f"{field}.id", f"expected an integer image id, got {image_id!r}")
            if image_id in images:
                raise UserError(source, f"{field}.id", f"duplicate image id {image_id}")
            if not isinstance(img.get("file_name"), str):
                raise UserError(source, f"{field}.file_name", "missing")
            for key in ("width", "height"):
                if not _is_id(img.get(key)) or img[key] <= 0:
                    raise UserError(source, f"{field}.{key}", f"expected a positive integer, got {img.get(key)!r}")
            images[image_id] = img

        boxes: dict[int, list] = {image_id: [] for image_id in images}
        labels: dict[int, list] = {image_id: [] for image_id in images}
        ignore: dict[int, list] = {image_id: [] for image_id in images}
        for i, ann in enumerate(data["annotations"]):
            field = f"annotations[{i}]"
            if not isinstance(ann, dict):
                raise UserError(source, field, "expected an object")
            image_id = ann.get("image_id")
            if not _is_id(image_id) or image_id not in images:
                raise UserError(source, f"{field}.image_id", f"unknown image id {image_id!r}")
            category = ann.get("category_id")
            if not _is_id(category) or category not in label_of:
                raise UserError(source, f"{field}.category_id", f"unknown category id {category!r}")
            img = images[image_id]
            box = _bbox_xyxy(ann, img["width"], img["height"], source, field)
            if box is None:
                continue
            if ann.get("iscrowd", 0):
                ignore[image_id].append(box)
            else:
                boxes[image_id].append(box)
                labels[image_id].append(label_of[category])

        def stack(rows: list) -> np.ndarray:
            return np.stack(rows).astype(np.float32) if rows else EMPTY_BOXES

        return tuple(
            ImageRecord(
                image_id=image_id,
                file_name=img["file_name"],
                width=img["width"],
                height=img["height"],
                boxes=stack(boxes[image_id]),
                labels=np.array(labels[image_id], dtype=np.int64) if labels[image_id] else EMPTY_LABELS,
                ignore=stack(ignore[image_id]),
            )
            for image_id, img in images.items()
        )

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def __len__(self) -> int:
        return len(self.records)

    def image_path(self, index: int) -> Path:
        return self.images_dir / self.records[index].file_name

    def __getitem__(self, index: int) -> Sample:
        return self.load(index)

    def decoded_bytes(self, max_side: int | None = None) -> int:
        """How much memory ``cache_decoded(max_side)`` takes, estimated from the recorded sizes
        without reading a file."""
        return sum(3 * math.prod(cached_shape(r.width, r.height, r.file_name, max_side)) for r in self.records)

    def cache_decoded(self, max_side: int | None = None, progress: bool = False) -> None:
        """Decode every image once and keep the pixels, so ``load(i, max_side)`` stops reading
        files. Fill it before DataLoader workers start, so forked workers share it.

        With ``max_side``, an image whose long side is longer is kept shrunk to it, as every
        letterbox and mosaic tile of that size would shrink it (the same pixels: the resize is
        done once, not at each use; ~8% of a small set's epoch)."""
        todo = [i for i in range(len(self)) if (i, max_side) not in self._decoded]

        def decode(index: int) -> np.ndarray:
            image = load_rgb(self.image_path(index), max_side)
            return image if max_side is None else shrink_to_fit(image, max_side)

        # Pillow decodes and resizes without holding the GIL, so threads overlap the files.
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            images = pool.map(decode, todo)
            for index, image in zip(todo, tqdm(images, total=len(todo), desc="caching images", leave=False,
                                               disable=not progress)):
                image.flags.writeable = False
                self._decoded[index, max_side] = image

    def load(self, index: int, max_side: int | None = None) -> Sample:
        """The raw example; with ``max_side``, a JPEG may be decoded at a reduced scale whose long
        side is still at least ``max_side`` (much faster when the pipeline shrinks it anyway),
        and a cached image comes shrunk to exactly ``max_side`` (``cache_decoded``). Boxes follow
        the pixels. The pixels are the caller's to change, cached or not."""
        record = self.records[index]
        cached = self._decoded.get((index, max_side))
        image = cached.copy() if cached is not None else load_rgb(self.image_path(index), max_side)
        boxes, ignore = record.boxes, record.ignore
        h, w = image.shape[:2]
        if (w, h) != (record.width, record.height):
            # Annotations are in the recorded size; follow the pixels we actually have.
            factor = np.array([w / record.width, h / record.height] * 2, dtype=np.float32)
            boxes, ignore = boxes * factor, ignore * factor
        return Sample(image=image, boxes=boxes.copy(), labels=record.labels.copy(), ignore=ignore.copy(),
                      image_id=record.image_id)


def cached_shape(width: int, height: int, file_name: str, max_side: int | None = None) -> tuple[int, int]:
    """``(width, height)`` that ``cache_decoded(max_side)`` keeps of a ``width x height`` file."""
    w, h = decoded_shape(width, height, file_name, max_side)
    return (w, h) if max_side is None or max(w, h) <= max_side else fitted_size(w, h, max_side)


def decoded_shape(width: int, height: int, file_name: str, max_side: int | None = None) -> tuple[int, int]:
    """``(width, height)`` that :func:`load_rgb` gives a ``width x height`` file: Pillow's JPEG
    draft decodes at the largest reduction of 1/2, 1/4 or 1/8 that keeps the requested size."""
    if max_side is None or not file_name.lower().endswith((".jpg", ".jpeg")):
        return width, height
    ratio = max_side / max(width, height)
    if ratio > 0.5:
        return width, height
    fits = min(width // max(1, math.ceil(width * ratio)), height // max(1, math.ceil(height * ratio)))
    reduce = max(r for r in (1, 2, 4, 8) if r <= max(1, fits))
    return math.ceil(width / reduce), math.ceil(height / reduce)


def load_rgb(path: str | os.PathLike, max_side: int | None = None) -> np.ndarray:
    """An image file as ``uint8 [H, W, 3]`` RGB, upright (its EXIF orientation applied, as the
    annotation tools that show it upright see it) and scaled to 8 bits (``memory.rgb_image``)."""
    with open_image(path) as image:
        if max_side is not None:
            w, h = image.size
            ratio = max_side / max(w, h)
            if ratio <= 0.5:  # JPEG draft decodes at 1/2, 1/4 or 1/8; other formats ignore it
                image.draft("RGB", (max(1, math.ceil(w * ratio)), max(1, math.ceil(h * ratio))))
        return np.asarray(rgb_image(image, str(path)), dtype=np.uint8).copy()
