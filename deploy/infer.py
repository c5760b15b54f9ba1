#!/usr/bin/env python3
"""Run a detector exported by ``tinynas export`` on images, with onnxruntime, numpy and Pillow only.

    python deploy/infer.py MODEL.onnx IMAGE [IMAGE ...] [--conf 0.25] [--iou 0.7] [--max-det 100] [--out FILE]

Everything the model needs is read from the file's ``metadata_props`` (class names, input
size, pre-processing, whether NMS is inside, the outputs' layout). Each image is prepared as
``tinynas predict`` prepares it (upright, 8-bit RGB, a large JPEG decoded at a draft scale,
letterboxed on grey, scaled to [0, 1], NCHW float32); without NMS in the graph the scores and
boxes go through the same per-class greedy NMS as predict's. Detections are printed (or written
to ``--out``) as JSON: per image its size and a list of ``{"class", "name", "score", "box"}``,
``box`` as ``[x1, y1, x2, y2]`` in the original image's pixels.

This file imports nothing of tinynas: copy it next to the model and run it anywhere.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np
from PIL import Image, ImageOps

METADATA_VERSION = 1
# tinynas predict's defaults: the thresholds a deployed model is usually run at.
CONF, IOU, MAX_DETECTIONS, PRE_NMS_TOP_K = 0.25, 0.7, 100, 3000
ORIENTATION_TAG = 0x0112


class InferError(Exception):
    """A bad model file, image or option: reported in one line, exit code 2."""


def read_metadata(session, path: str) -> dict:
    props = session.get_modelmeta().custom_metadata_map
    if "tinynas_deploy" not in props:
        raise InferError(f"{path}: metadata_props: no tinynas deploy metadata (export it with `tinynas export`)")
    try:
        meta = {key: json.loads(value) for key, value in props.items()}
    except ValueError as err:
        raise InferError(f"{path}: metadata_props: not JSON text ({err})") from None
    if meta["tinynas_deploy"] != METADATA_VERSION:
        raise InferError(f"{path}: metadata_props.tinynas_deploy: unsupported version {meta['tinynas_deploy']!r}")
    for key in ("class_names", "input_size", "input_shape", "nms", "preprocess"):
        if key not in meta:
            raise InferError(f"{path}: metadata_props.{key}: missing")
    return meta


def load_rgb(path: str, size: int) -> tuple[np.ndarray, int, int]:
    """The image as ``uint8 [h, w, 3]`` RGB, upright, and its full upright (width, height).
    A JPEG at least twice the input size is decoded at a reduced draft scale, as tinynas does."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(ORIENTATION_TAG, 1)
            if orientation in (5, 6, 7, 8):  # a quarter turn swaps the sides
                full = (height, width)
            else:
                full = (width, height)
            ratio = size / max(width, height)
            if ratio <= 0.5:
                image.draft("RGB", (max(1, math.ceil(width * ratio)), max(1, math.ceil(height * ratio))))
            if orientation != 1:
                image = ImageOps.exif_transpose(image)
            if image.mode in ("I", "F") or image.mode.startswith("I;16"):
                raise InferError(f"{path}: a {image.mode} image (more than 8 bits): convert it to 8-bit RGB first")
            pixels = np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except OSError as err:
        raise InferError(f"{path}: not a readable image ({err})") from None
    return pixels, full[0], full[1]


def letterbox(pixels: np.ndarray, size: int, pad_value: int) -> tuple[np.ndarray, int, int]:
    """``[1, 3, size, size]`` float32 in [0, 1]: the image resized (bilinear) so its long side is
    ``size``, centred on a square of ``pad_value``; and the left and top padding."""
    h, w = pixels.shape[:2]
    fit = size / max(h, w)
    new_w, new_h = max(1, round(w * fit)), max(1, round(h * fit))
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    canvas = Image.new("RGB", (size, size), (pad_value,) * 3)
    canvas.paste(Image.fromarray(pixels).resize((new_w, new_h), Image.BILINEAR), (pad_x, pad_y))
    chw = np.asarray(canvas, dtype=np.uint8).transpose(2, 0, 1).astype(np.float32)
    np.divide(chw, 255.0, out=chw)
    return chw[None], pad_x, pad_y


def greedy_nms(boxes: np.ndarray, scores: np.ndarray, iou: float, max_keep: int) -> np.ndarray:
    """Indices kept, best first: a box goes when its IoU with a kept higher-scoring box is > ``iou``.

    The same float32 operations in the same order as tinynas/detect/nms.py (this file may not
    import tinynas), so the overlaps, and the boxes kept, are predict's;
    tests/test_deploy_kit.py checks that they are."""
    order = np.argsort(-scores, kind="stable")
    ranked = boxes[order]
    areas = np.clip(ranked[:, 2] - ranked[:, 0], 0, None) * np.clip(ranked[:, 3] - ranked[:, 1], 0, None)
    tiny = np.asarray(1e-9, dtype=ranked.dtype)
    suppressed = np.zeros(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        if len(keep) == max_keep:
            break
        rest = ranked[i + 1:]
        sides = np.clip(np.minimum(ranked[i, 2:], rest[:, 2:]) - np.maximum(ranked[i, :2], rest[:, :2]), 0, None)
        inter = sides[:, 0] * sides[:, 1]
        suppressed[i + 1:] |= inter / np.maximum(areas[i] + areas[i + 1:] - inter, tiny) > iou
    return order[np.asarray(keep, dtype=np.int64)]


def per_class_nms(scores: np.ndarray, boxes: np.ndarray, conf: float, iou: float,
                  max_detections: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``scores [A, C]``, ``boxes [A, 4]`` -> kept (boxes, scores, classes): every (anchor, class)
    pair scoring above ``conf`` is a candidate; boxes of different classes never suppress each other
    (each class is shifted clear of the others, so one pass does all)."""
    anchors, classes = np.nonzero(scores > conf)
    cand_scores = scores[anchors, classes]
    if len(cand_scores) > PRE_NMS_TOP_K:
        top = np.argsort(-cand_scores, kind="stable")[:PRE_NMS_TOP_K]
        anchors, classes, cand_scores = anchors[top], classes[top], cand_scores[top]
    cand_boxes = boxes[anchors]
    if len(cand_boxes) == 0:
        return cand_boxes, cand_scores, classes
    low = cand_boxes.min()
    span = cand_boxes.max() - low + 1
    shifted = cand_boxes - low + classes.astype(cand_boxes.dtype)[:, None] * span
    keep = greedy_nms(shifted, cand_scores, iou, max_detections)
    return cand_boxes[keep], cand_scores[keep], classes[keep]


def detect(session, meta: dict, path: str, conf: float, iou: float, max_detections: int) -> dict:
    size = meta["input_size"]
    pixels, width, height = load_rgb(path, size)
    batch, pad_x, pad_y = letterbox(pixels, size, int(meta["preprocess"]["pad_value"]))
    repeat = int(meta["input_shape"][0])
    if repeat > 1:  # an export with a fixed batch: the image fills every slot, the first answers
        batch = np.repeat(batch, repeat, axis=0)
    outputs = session.run(None, {session.get_inputs()[0].name: batch})
    if meta["nms"]:
        rows = outputs[0]
        rows = rows[(rows[:, 0] == 0) & (rows[:, 5] > conf)]
        rows = rows[np.argsort(-rows[:, 5], kind="stable")][:max_detections]
        boxes, scores, classes = rows[:, 1:5], rows[:, 5], rows[:, 6].astype(np.int64)
    else:
        boxes, scores, classes = per_class_nms(outputs[0][0], outputs[1][0], conf, iou, max_detections)
    # Back to the full image: a draft-decoded image was letterboxed from fewer pixels.
    scale = min(size / width, size / height)
    out = np.asarray(boxes, dtype=np.float32).copy()
    out[:, [0, 2]] = np.clip((out[:, [0, 2]] - pad_x) / scale, 0, width)
    out[:, [1, 3]] = np.clip((out[:, [1, 3]] - pad_y) / scale, 0, height)
    names = meta["class_names"]
    return {"image": path, "width": width, "height": height,
            "detections": [{"class": int(c), "name": names[int(c)], "score": float(s), "box": b}
                           for b, s, c in zip(out.tolist(), scores.tolist(), classes.tolist())]}


def fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Detect objects with a tinynas ONNX export; print JSON.")
    parser.add_argument("model", help="an .onnx file written by `tinynas export`")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--conf", type=fraction, default=CONF, help="score threshold (default %(default)s)")
    parser.add_argument("--iou", type=fraction, default=IOU,
                        help="NMS IoU threshold, when NMS is not in the graph (default %(default)s)")
    parser.add_argument("--max-det", type=int, default=MAX_DETECTIONS, help="detections kept per image (default %(default)s)")
    parser.add_argument("--out", default=None, help="write the JSON to this file instead of printing it")
    args = parser.parse_args(argv)
    try:
        import onnxruntime as ort
    except ImportError:
        print("infer.py: error: needs onnxruntime: pip install onnxruntime", file=sys.stderr)
        return 2
    try:
        try:
            session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types for a bad file
            first = (str(err).strip().splitlines() or [err.__class__.__name__])[0]
            raise InferError(f"{args.model}: not a readable ONNX model ({first[:200]})") from None
        meta = read_metadata(session, args.model)
        results = [detect(session, meta, path, args.conf, args.iou, args.max_det) for path in args.images]
    except InferError as err:
        print(f"infer.py: error: {err}", file=sys.stderr)
        return 2
    text = json.dumps(results, indent=1)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
