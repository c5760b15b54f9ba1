"""Property-based fuzzing of the data side a user hands us beyond COCO JSON: image files of
every pixel mode, YOLO txt and VOC XML label files, and what predict writes.

The property is the one of ``test_fuzz.py``: accepted, or refused with one ``tinynas: error:``
line and exit code 2 — never a traceback. Accepted inputs must also be right: a converted
file is strict JSON with finite, positive boxes; a decoded image is 8-bit RGB that keeps a
picture's contrast; predictions.json loads in pycocotools and scores what evaluation scores.
"""

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from fuzzing import corrupted_text, record
from test_fuzz import cli, fuzz_settings, library, sandbox  # noqa: F401  (sandbox is a fixture)
from tinynas.checkpoint import load_checkpoint
from tinynas.data import CocoDataset, DetectionDataset
from tinynas.data.coco import load_rgb
from tinynas.detect.predict import predict
from tinynas.train.coco_eval import coco_metrics
from tinynas.train.evaluate import evaluate

MODES = ["1", "L", "P", "LA", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "I;16", "I;16B", "I", "F", "LAB", "HSV"]
FORMATS = ["png", "tiff", "bmp", "gif", "webp", "jpeg"]
WIDE = {"I;16": "<u2", "I;16B": ">u2", "I": "=i4", "F": "=f4"}  # the raw layout of each mode


def strict_json(text: str):
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))


@st.composite
def odd_image(draw):
    """An image of any mode, size, pixel values and EXIF orientation, saved in any format."""
    mode = draw(st.sampled_from(MODES))
    width, height = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    if mode in WIDE:
        kind = draw(st.sampled_from(["small", "full", "negative", "special"]))
        if mode == "F":
            values = {"small": rng.random((height, width)), "full": rng.normal(0, 1e6, (height, width)),
                      "negative": -rng.random((height, width)),
                      "special": rng.choice([0.0, 1.0, np.nan, np.inf, -np.inf, 1e38], (height, width))}[kind]
        else:
            top = {"I;16": 65535, "I;16B": 65535, "I": 2 ** 31 - 1}[mode]
            low = -2 ** 31 if mode == "I" and kind == "negative" else 0
            values = rng.integers(low, {"small": 4096, "full": top, "negative": top, "special": 2}[kind],
                                  (height, width), endpoint=True)
        image = Image.frombytes(mode, (width, height), np.asarray(values).astype(WIDE[mode]).tobytes())
    else:
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).convert(mode) \
            if mode not in ("LAB", "HSV") else Image.frombytes(mode, (width, height), rng.bytes(width * height * 3))
    # Deep pixels mostly where they live (TIFF, PNG), so that their scaling is what gets tried.
    fmt = draw(st.sampled_from(["tiff", "tiff", "png", *FORMATS] if mode in WIDE else FORMATS))
    return image, fmt, draw(st.sampled_from([None, 1, 3, 6, 8, 5]))


@fuzz_settings(200)
@given(case=odd_image())
def test_fuzz_image_modes(sandbox, case):
    image, fmt, orientation = case
    path = sandbox.inputs / f"img.{fmt}"
    exif = image.getexif()
    if orientation is not None:
        exif[0x0112] = orientation
    try:
        image.save(path, format=fmt.upper(), exif=exif)
    except (OSError, ValueError, KeyError, TypeError):
        return  # PIL cannot write this mode in this format: nothing a user could hand us
    width, height = Image.open(path).size
    doc = {"images": [{"id": 1, "file_name": path.name, "width": width, "height": height}],
           "annotations": [], "categories": [{"id": 1, "name": "a"}]}
    ann = sandbox.write("ann.json", json.dumps(doc))
    cli("image modes", sandbox, ["data", "check", str(ann), "--images", str(sandbox.inputs), "--decode", "--quiet"],
        codes=(0, 1, 2))
    decoded = []
    library("image modes", sandbox, lambda: decoded.append(load_rgb(path)), count=False)
    if decoded:
        pixels = decoded[0]
        assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
        assert sorted(pixels.shape[:2]) == sorted((height, width))
        stored = np.asarray(Image.open(path))
        lossless = fmt in ("png", "tiff") and image.mode in WIDE
        if lossless and np.isfinite(stored).all() and len(np.unique(stored)) > 1:
            # A picture with contrast keeps it (convert("RGB") clipped most of these flat).
            assert len(np.unique(pixels)) > 1


LINE_TOKENS = st.sampled_from(["0", "1", "2", "3", "-1", "0.5", "0.25", "1.0", "1.5", "32", "128", "-0.2", "nan",
                               "inf", "-inf", "1e999", "0x10", "", "a", "0.0", "1e-9", "\x00", "é"])


@fuzz_settings(300)
@given(lines=st.lists(st.lists(LINE_TOKENS, min_size=0, max_size=7).map(" ".join), max_size=5),
       raw=st.booleans(), data=st.data())
def test_fuzz_yolo_labels(sandbox, lines, raw, data):
    images, labels = sandbox.inputs / "images", sandbox.inputs / "labels"
    images.mkdir(exist_ok=True)
    labels.mkdir(exist_ok=True)
    Image.new("RGB", (64, 48), (90, 90, 90)).save(images / "x.png")
    text = "\n".join(lines)
    if raw:
        text = data.draw(corrupted_text("0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.4\n"))
    (labels / "x.txt").write_bytes(text.encode("utf-8", "surrogatepass"))
    out = sandbox.run / "out.json"
    code = cli("YOLO txt", sandbox, ["data", "convert", "--from", "yolo", str(labels), "--images", str(images),
                                     "--classes", "a,b,c", "--out", "out.json", "--force"])
    if code == 0:
        converted = strict_json(out.read_text())
        for ann in converted["annotations"]:
            x, y, w, h = ann["bbox"]
            assert all(math.isfinite(v) for v in (x, y, w, h)) and w > 0 and h > 0
            assert -64 <= x <= 64 and -48 <= y <= 48 and w <= 64 and h <= 48


VOC = """<annotation><filename>x.png</filename><size><width>{w}</width><height>{h}</height></size>
<object><name>{name}</name><difficult>{difficult}</difficult>
<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object></annotation>"""
VOC_VALUES = st.sampled_from(["1", "10", "40", "0", "-5", "nan", "inf", "1e999", "", "x", "12.5", "99999"])


@fuzz_settings(300)
@given(fields=st.fixed_dictionaries({k: VOC_VALUES for k in ("w", "h", "x0", "y0", "x1", "y1")}),
       name=st.sampled_from(["cat", "", "dog", "<", "&amp;"]), difficult=st.sampled_from(["0", "1", "x", ""]),
       raw=st.booleans(), data=st.data())
def test_fuzz_voc_xml(sandbox, fields, name, difficult, raw, data):
    folder = sandbox.inputs / "xml"
    folder.mkdir(exist_ok=True)
    text = VOC.format(name=name, difficult=difficult, **fields)
    if raw:
        text = data.draw(corrupted_text(VOC.format(name="cat", difficult="0", w=64, h=48, x0=5, y0=5, x1=30, y1=20)))
    (folder / "x.xml").write_bytes(text.encode("utf-8", "surrogatepass"))
    code = cli("VOC XML", sandbox, ["data", "convert", "--from", "voc", str(folder), "--out", "out.json", "--force"])
    if code == 0:
        converted = strict_json((sandbox.run / "out.json").read_text())
        for ann in converted["annotations"]:
            assert all(math.isfinite(v) for v in ann["bbox"]) and ann["bbox"][2] > 0 and ann["bbox"][3] > 0


@pytest.fixture(scope="module")
def scored(trained):
    """The one-epoch checkpoint (conftest's ``trained``), its model and its val set."""
    data, run = trained
    ckpt = load_checkpoint(run / "best.pt")
    return data, ckpt.build(), ckpt.class_names


@fuzz_settings(10)
@given(conf=st.sampled_from([0.001, 0.01, 0.2, 0.9]), iou=st.sampled_from([0.3, 0.7, 1.0]),
       max_det=st.sampled_from([1, 5, 100]), size=st.sampled_from([64, 128, 160]), batch=st.sampled_from([1, 3, 8]))
def test_fuzz_predictions_score_what_eval_scores(sandbox, scored, conf, iou, max_det, size, batch):
    data, model, names = scored
    out = sandbox.run / "pred"
    predict(model, names, data.val_images, out, size=size, conf_threshold=conf, iou_threshold=iou,
            max_detections=max_det, draw=False, progress=False, force=True, annotations=data.val_annotations,
            batch_size=batch)
    results = strict_json((out / "predictions.json").read_text())
    val = DetectionDataset(CocoDataset(data.val_annotations, data.val_images), size)
    expected = evaluate(model, val, batch_size=batch, conf_threshold=conf, iou_threshold=iou,
                        max_detections=max_det)
    with contextlib.redirect_stdout(io.StringIO()):
        scored_file = coco_metrics(data.val_annotations, results)  # pycocotools loadRes + COCOeval
    assert len(results) == expected["detections"]
    for key in ("AP", "AP50", "AP75", "APs", "APm", "APl"):
        assert scored_file[key] == expected[key], key
    record("predictions.json", None)
