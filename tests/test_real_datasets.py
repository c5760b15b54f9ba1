"""The real-dataset builders of benchmarks/real_datasets.py, without network: each source is fed
a zip (or tar.gz) laid out like its pinned wheel (or sdist), holding small images with boxes
placed so that the count per split is known by hand. One more test rebuilds the real sets when
their archives are cached."""

import io
import json
import os
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import real_datasets  # noqa: E402
from real_datasets import Tile, build, shared_regions  # noqa: E402

from tinynas.data.coco import CocoDataset  # noqa: E402


def _voc(boxes):
    objects = "".join(f"<object><name>Tree</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
                      f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>" for x0, y0, x1, y1 in boxes)
    return f"<annotation>{objects}</annotation>"


def _wheel(cache: Path, name: str, members: dict[str, bytes]) -> None:
    package, version = real_datasets.WHEELS[name]
    cache.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(cache / f"{package}-{version}-py3-none-any.whl", "w") as zf:
        for member, data in members.items():
            zf.writestr(member, data)


def _sdist(cache: Path, name: str, members: dict[str, bytes]) -> None:
    package, version = real_datasets.WHEELS[name]
    cache.mkdir(parents=True, exist_ok=True)
    with tarfile.open(cache / f"{package}-{version}.tar.gz", "w:gz") as tf:
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def _encode(array: np.ndarray, fmt: str) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format=fmt)
    return out.getvalue()


def _read_split(dataset, split, crowd=False):
    """{file_name: sorted (class index, x0, y0, x1, y1)} of the boxes from the COCO JSON and from
    the YOLO txt files (in pixels); with ``crowd``, the COCO JSON's crowd regions instead of its
    boxes."""
    doc = json.loads((dataset.root / "annotations" / f"{split}.json").read_text())
    assert [c["name"] for c in doc["categories"]] == list(dataset.classes)
    sizes = {im["id"]: (im["file_name"], im["width"], im["height"]) for im in doc["images"]}
    coco = {name: [] for name, _, _ in sizes.values()}
    for ann in doc["annotations"]:
        x, y, w, h = ann["bbox"]
        assert 1 <= ann["category_id"] <= len(dataset.classes) and ann["area"] == pytest.approx(w * h)
        assert ann["iscrowd"] in (0, 1)
        if ann["iscrowd"] == crowd:
            coco[sizes[ann["image_id"]][0]].append((ann["category_id"] - 1, x, y, x + w, y + h))
    yolo = {}
    for name, width, height in sizes.values():
        with Image.open(dataset.root / "images" / split / name) as image:
            assert image.size == (width, height)
        rows = []
        for line in (dataset.root / "labels" / split / (Path(name).stem + ".txt")).read_text().split("\n"):
            if line:
                cls, cx, cy, bw, bh = line.split()
                cx, cy, bw, bh = float(cx) * width, float(cy) * height, float(bw) * width, float(bh) * height
                rows.append((int(cls), cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2))
        yolo[name] = rows
    def in_order(boxes):  # YOLO's 6 decimals move a box by < 0.001 px: order both on 2 decimals
        return sorted(boxes, key=lambda box: (box[0], *(round(v, 2) for v in box[1:])))

    return {k: in_order(v) for k, v in coco.items()}, {k: in_order(v) for k, v in yolo.items()}


def _assert_coco_matches_yolo(dataset):
    for split in ("train", "val"):
        coco, yolo = _read_split(dataset, split)
        assert coco.keys() == yolo.keys()
        for name in coco:
            assert len(coco[name]) == len(yolo[name]), name
            coco_rows, yolo_rows = np.array(coco[name]).reshape(-1, 5), np.array(yolo[name]).reshape(-1, 5)
            assert (coco_rows[:, 0] == yolo_rows[:, 0]).all(), name
            assert np.allclose(coco_rows[:, 1:], yolo_rows[:, 1:], atol=1e-3)


def _counts(dataset):
    """{split: (images, boxes, crowd regions)} of the COCO JSON."""
    out = {}
    for split in ("train", "val"):
        doc = json.loads((dataset.root / "annotations" / f"{split}.json").read_text())
        crowd = sum(ann["iscrowd"] for ann in doc["annotations"])
        out[split] = (len(doc["images"]), len(doc["annotations"]) - crowd, crowd)
    return out


def test_tile_keeps_a_box_cut_by_the_border_only_when_half_of_it_is_inside():
    image = np.zeros((100, 260, 3), dtype=np.uint8)
    boxes = np.array([[90, 10, 110, 30],    # 50% in the first tile, 50% in the second: kept in both
                      [94, 40, 104, 50],    # 60% in the first tile: kept there, clipped to 94..100
                      [10, 60, 20, 70],     # wholly inside the first tile
                      [250, 10, 270, 20]],  # half outside the image: kept, clipped at the right border
                     dtype=np.float32)
    tiles = real_datasets._tile("img", image, boxes, 100)
    # 260 px: origins 0, 100 and one pulled back to end at the border (160), not a 60 px sliver
    assert [(t.x0, t.y0) for t in tiles] == [(0, 0), (100, 0), (160, 0)]
    assert [t.pixels.shape[:2] for t in tiles] == [(100, 100)] * 3
    first, second, last = (sorted(t.boxes.tolist()) for t in tiles)
    assert first == [[10, 60, 20, 70], [90, 10, 100, 30], [94, 40, 100, 50]]
    assert second == [[0, 10, 10, 30]]
    assert last == [[90, 10, 100, 20]]
    assert [t.file_name for t in tiles] == ["img_00000_00000.png", "img_00000_00100.png", "img_00000_00160.png"]


def test_shared_regions_names_overlapping_windows_of_one_source_and_repeated_files():
    def tile(name, source, x0, y0, size=10):
        return Tile(name, source, x0, y0, np.zeros((size, size, 3), np.uint8), np.zeros((0, 4), np.float32))

    train = [tile("a_0_0.png", "a", 0, 0), tile("b.png", "b", 0, 0)]
    assert shared_regions(train, [tile("a_0_10.png", "a", 10, 0)]) == []   # touching, not overlapping
    assert shared_regions(train, [tile("c.png", "c", 0, 0)]) == []         # same window, other image
    assert shared_regions(train, [tile("a_5_5.png", "a", 5, 5)]) == ["pixels of a (a_0_0.png and a_5_5.png)"]
    assert shared_regions(train, [tile("b.png", "z", 50, 50)]) == ["the file b.png"]


def test_trees_splits_by_source_image_with_known_box_counts(tmp_path):
    rng = np.random.default_rng(0)
    base = "deepforest/data/"
    crop2_boxes = [(20, 20, 60, 60), (320, 320, 360, 360), (650, 450, 690, 490)]
    soap_boxes = [(10, 10, 50, 50), (100, 100, 150, 160)]
    crop_boxes = [(30, 30, 80, 80)]
    osbs_boxes = [(5, 5, 25, 25), (200, 200, 260, 250), (300, 10, 390, 90)]
    sources = {"2019_YELL_2_528000_4978000_image_crop2": ((500, 700), crop2_boxes),
               "SOAP_061": ((400, 400), soap_boxes),
               "2019_YELL_2_541000_4977000_image_crop": ((300, 350), crop_boxes),
               "OSBS_029": ((400, 400), osbs_boxes)}
    members = {}
    for stem, ((h, w), boxes) in sources.items():
        members[base + stem + ".png"] = _encode(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "PNG")
        members[base + stem + ".xml"] = _voc(boxes).encode()
    _wheel(tmp_path / "wheels", "trees", members)

    dataset = build("trees", tmp_path / "data", tmp_path / "wheels")

    # crop2 (700x500 at 400 px): tiles (x0, y0) in {0, 300} x {0, 100}
    #   box 1 (20..60, 20..60): only tiles with x0=0 and y0=0 hold it  -> 1
    #   box 2 (320..360): x inside both columns, y inside both rows    -> 4
    #   box 3 (650..690, 450..490): x only in column 300, y only in row 100 -> 1
    # plus SOAP_061 as one 400x400 tile with its 2 boxes
    assert _counts(dataset) == {"train": (4 + 1, 1 + 4 + 1 + 2, 0), "val": (1 + 1, 1 + 3, 0)}
    def source_of(file_name):
        return next(stem for stem in sources if file_name == stem + ".png" or file_name.startswith(stem + "_"))

    train = {source_of(p.name) for p in dataset.train_images.iterdir()}
    val = {source_of(p.name) for p in dataset.val_images.iterdir()}
    assert train == {"2019_YELL_2_528000_4978000_image_crop2", "SOAP_061"}
    assert val == {"2019_YELL_2_541000_4977000_image_crop", "OSBS_029"}
    _assert_coco_matches_yolo(dataset)
    assert dataset.summary() == "trees: train 5 images / 8 boxes, val 2 images / 4 boxes"
    assert dataset.classes == ("Tree",)
    assert "names:\n  0: Tree\n" in dataset.yolo_yaml.read_text()


def test_nuclei_split_by_rows_keeps_pixels_disjoint_and_counts_a_cut_nucleus_once(tmp_path):
    rng = np.random.default_rng(1)
    raw = rng.integers(100, 4000, (512, 512)).astype(np.uint16)
    mask = np.zeros((512, 512), dtype=np.int32)
    mask[10:30, 10:30] = 1     # train, row 0
    mask[200:220, 300:330] = 2  # train, row 1
    mask[300:320, 5:25] = 3     # train, row 2
    mask[370:390, 140:160] = 4  # cut by the val border at 384: 14 rows above, 6 below -> train only
    mask[380:400, 200:220] = 5  # 4 rows above, 16 below -> val only
    mask[450:470, 450:470] = 6  # val, row 3
    members = {"stardist/data/images/img2d.tif": _encode(raw, "TIFF"),
               "stardist/data/images/mask2d.tif": _encode(mask, "TIFF")}
    _wheel(tmp_path / "wheels", "nuclei", members)

    dataset = build("nuclei", tmp_path / "data", tmp_path / "wheels")

    assert _counts(dataset) == {"train": (12, 4, 0), "val": (4, 2, 0)}
    coco_train, _ = _read_split(dataset, "train")
    coco_val, _ = _read_split(dataset, "val")
    assert coco_train["nuclei_00256_00128.png"] == [(0, 12.0, 114.0, 32.0, 128.0)]  # nucleus 4, clipped at the border
    assert coco_val["nuclei_00384_00128.png"] == [(0, 72.0, 0.0, 92.0, 16.0)]       # nucleus 5, clipped at the border
    rows = {split: {int(p.stem.split("_")[1]) for p in (dataset.root / "images" / split).iterdir()}
            for split in ("train", "val")}
    assert rows == {"train": {0, 128, 256}, "val": {384}}
    _assert_coco_matches_yolo(dataset)


def _mot_rows(rows):
    """gt.txt text from (frame, track, bb_left, bb_top, bb_width, bb_height, consider flag, class
    id, visibility), bb_left and bb_top 1-based as in MOT."""
    return "".join(",".join(str(v) for v in row) + "\n" for row in rows).encode()


def test_pedestrians_keeps_pedestrians_as_boxes_and_mot_dont_care_rows_as_crowd_regions(tmp_path):
    rng = np.random.default_rng(2)
    base = "boxmot-23.0.0/assets/MOT17-mini/train/"
    # Box comments give the 0-based pixel box x0..x1, y0..y1 (MOT's bb_left 1 is pixel column 0).
    train_rows = [(1, 1, 101, 101, 50, 100, 1, 1, 1.0),   # Pedestrian 100..150: left tile
                  (1, 2, 621, 201, 40, 80, 1, 1, 0.5),    # Pedestrian 620..660: half in each tile, kept in both
                  (1, 3, 301, 301, 20, 40, 0, 1, 1.0),    # Pedestrian, consider flag 0: crowd, left tile
                  (1, 4, 901, 51, 60, 60, 0, 3, 1.0),     # Car: dropped
                  (1, 5, 631, 401, 100, 50, 0, 7, 1.0),   # Static person 630..730: crowd in both tiles (10% left)
                  (1, 6, -29, 301, 40, 40, 1, 1, 1.0),    # Pedestrian -30..10, 25% in the frame: dropped
                  (2, 1, 106, 101, 50, 100, 1, 1, 1.0),   # Pedestrian 105..155: left tile
                  (2, 7, 701, 401, 30, 60, 0, 4, 1.0),    # Bicycle: dropped
                  (2, 8, 1001, 101, 30, 60, 0, 12, 1.0),  # Reflection 1000..1030: crowd, right tile
                  (2, 9, 1271, 1, 20, 20, 0, 8, 1.0)]     # Distractor 1270..1290: crowd clipped at the image border
    val_rows = [(1, 1, 11, 11, 20, 40, 0, 7, 1.0),        # Static person: crowd
                (1, 2, 301, 201, 50, 100, 1, 1, 0.9),     # Pedestrian
                (1, 3, 401, 101, 30, 30, 0, 8, 1.0),      # Distractor: crowd
                (1, 4, 501, 301, 20, 50, 0, 2, 1.0),      # Person on vehicle: crowd
                (1, 5, 101, 401, 40, 40, 0, 9, 1.0),      # Occluder: dropped
                (1, 6, 201, 1, 30, 60, 0, 11, 1.0),       # Occluder full: dropped
                (1, 7, 1, 1, 10, 20, 1, 1, 1.0)]          # Pedestrian at the first pixel: 0..10, 0..20
    members = {base + "MOT17-04-FRCNN/gt/gt.txt": _mot_rows(train_rows),
               base + "MOT17-02-FRCNN/gt/gt.txt": _mot_rows(val_rows),
               base + "MOT17-02-FRCNN/img1/000001.jpg": _encode(rng.integers(0, 256, (480, 640, 3), np.uint8), "JPEG")}
    for frame in (1, 2):  # 1280x640: two 640 px tiles side by side
        members[base + f"MOT17-04-FRCNN/img1/{frame:06d}.jpg"] = _encode(
            rng.integers(0, 256, (640, 1280, 3), np.uint8), "JPEG")
    _sdist(tmp_path / "wheels", "pedestrians", members)

    dataset = build("pedestrians", tmp_path / "data", tmp_path / "wheels")

    # train boxes: frame 1 left 2, right 1; frame 2 left 1. crowd: frame 1 left 2, right 1; frame 2 right 2
    assert _counts(dataset) == {"train": (4, 2 + 1 + 1, 2 + 1 + 2), "val": (1, 2, 3)}
    assert dataset.classes == ("Pedestrian",)
    coco_train, _ = _read_split(dataset, "train")
    crowd_train, _ = _read_split(dataset, "train", crowd=True)
    left, right = "MOT17-04-FRCNN_000001_00000_00000.png", "MOT17-04-FRCNN_000001_00000_00640.png"
    left2, right2 = "MOT17-04-FRCNN_000002_00000_00000.png", "MOT17-04-FRCNN_000002_00000_00640.png"
    assert coco_train == {left: [(0, 100.0, 100.0, 150.0, 200.0), (0, 620.0, 200.0, 640.0, 280.0)],
                          right: [(0, 0.0, 200.0, 20.0, 280.0)],
                          left2: [(0, 105.0, 100.0, 155.0, 200.0)], right2: []}
    assert crowd_train == {left: [(0, 300.0, 300.0, 320.0, 340.0), (0, 630.0, 400.0, 640.0, 450.0)],
                           right: [(0, 0.0, 400.0, 90.0, 450.0)], left2: [],
                           right2: [(0, 360.0, 100.0, 390.0, 160.0), (0, 630.0, 0.0, 640.0, 20.0)]}
    coco_val, yolo_val = _read_split(dataset, "val")
    crowd_val, _ = _read_split(dataset, "val", crowd=True)
    assert coco_val == {"MOT17-02-FRCNN_000001.png": [(0, 0.0, 0.0, 10.0, 20.0), (0, 300.0, 200.0, 350.0, 300.0)]}
    assert crowd_val == {"MOT17-02-FRCNN_000001.png": [(0, 10.0, 10.0, 30.0, 50.0), (0, 400.0, 100.0, 430.0, 130.0),
                                                       (0, 500.0, 300.0, 520.0, 350.0)]}
    assert len(yolo_val["MOT17-02-FRCNN_000001.png"]) == 2  # YOLO has no ignore regions: the boxes only
    _assert_coco_matches_yolo(dataset)  # and so for every tile of both splits
    # tinynas reads the crowd regions as ignore boxes, not targets
    train = CocoDataset(dataset.train_annotations, dataset.train_images)
    assert (sum(len(r.boxes) for r in train.records), sum(len(r.ignore) for r in train.records)) == (4, 5)
    assert all(p.name.startswith("MOT17-04-FRCNN_") for p in dataset.train_images.iterdir())
    assert "names:\n  0: Pedestrian\n" in dataset.yolo_yaml.read_text()
    assert dataset.summary() == ("pedestrians: train 4 images / 4 boxes + 5 crowd regions, "
                                 "val 1 images / 2 boxes + 3 crowd regions")
    assert build("pedestrians", tmp_path / "data", tmp_path / "wheels").classes == dataset.classes  # read back


def test_build_refuses_splits_that_share_pixels(tmp_path, monkeypatch):
    image = np.zeros((200, 200, 3), dtype=np.uint8)
    tiles = real_datasets._tile("one", image, np.zeros((0, 4), np.float32), 150)   # origins 0 and 50: overlapping
    monkeypatch.setattr(real_datasets, "_nuclei", lambda zf: {"train": tiles[:2], "val": tiles[2:]})
    _wheel(tmp_path / "wheels", "nuclei", {"placeholder": b""})
    with pytest.raises(SystemExit, match="train and val share pixels of one"):
        build("nuclei", tmp_path / "data", tmp_path / "wheels")
    assert not (tmp_path / "data" / "nuclei" / "annotations").exists()


# The sizes written in the module docstring; checked when the pinned archives are already cached.
REAL_COUNTS = {"trees": {"train": (43, 716, 0), "val": (13, 461, 0)},
               "nuclei": {"train": (12, 91, 0), "val": (4, 33, 0)},
               "pedestrians": {"train": (48, 336, 40), "val": (24, 172, 96)}}
REAL_CLASSES = {"trees": ("Tree",), "nuclei": ("Nucleus",), "pedestrians": ("Pedestrian",)}


@pytest.mark.parametrize("name", sorted(REAL_COUNTS))
def test_real_build_from_cached_wheel_matches_the_documented_counts(name, tmp_path):
    cache = Path(os.environ.get("TINYNAS_REAL_WHEELS", ROOT / "runs" / "real-data" / "wheels"))
    package, version = real_datasets.WHEELS[name]
    if real_datasets.cached_archive(name, cache) is None:
        pytest.skip(f"{package}=={version} is not cached in {cache} (set TINYNAS_REAL_WHEELS)")
    dataset = build(name, tmp_path, cache)
    assert _counts(dataset) == REAL_COUNTS[name]
    assert dataset.classes == REAL_CLASSES[name]
    _assert_coco_matches_yolo(dataset)
