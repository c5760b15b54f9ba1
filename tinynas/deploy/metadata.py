"""What an exported ONNX file says about itself, in its ``metadata_props``.

A runtime outside tinynas (``deploy/infer.py``, a C++ service, a phone app) needs the class
names, the input size, how to prepare an image and what each output column means; they travel
in the file as key/value strings, every value JSON text. ``METADATA_VERSION`` counts changes
of this layout.
"""

from __future__ import annotations

import json
from typing import Sequence

from ..data.transforms import PAD_VALUE
from ..detect.nms import PRE_NMS_TOP_K, PREDICT_CONF, PREDICT_IOU, PREDICT_MAX_DETECTIONS
from ..errors import UserError

METADATA_VERSION = 1
VERSION_KEY = "tinynas_deploy"
KEYS = ("class_names", "category_ids", "input_name", "input_shape", "input_size", "trained_size", "strides", "preprocess", "nms",
        "postprocess", "outputs")

PREPROCESS = {
    "resize": "letterbox: scale = min(size / width, size / height); the image resized (bilinear) to "
              "round(width * size / max(width, height)) x round(height * size / max(width, height)), "
              "pasted at ((size - w) // 2, (size - h) // 2) on a size x size canvas of pad_value",
    "pad_value": PAD_VALUE,
    "interpolation": "bilinear",
    "channels": "RGB",
    "scale": "1/255",
    "layout": "NCHW",
    "dtype": "float32",
    "to_original": "x = clip((x_input - pad_x) / scale, 0, width), y likewise with pad_y and height",
}


def build_metadata(class_names: Sequence[str], size: int, strides: Sequence[int], batch: int, nms: bool,
                   conf_threshold: float, iou_threshold: float, max_detections: int,
                   trained_size: int | None, category_ids: Sequence[int] | None = None) -> dict[str, str]:
    """The ``metadata_props`` of an export, every value as JSON text."""
    anchors = sum((size // s) ** 2 for s in strides)
    classes = len(class_names)
    if nms:
        outputs = [{"name": "detections", "shape": ["K", 7],
                    "columns": ["batch_index", "x1", "y1", "x2", "y2", "score", "class"],
                    "meaning": "kept detections of every image of the batch; boxes in input (letterboxed) pixels, "
                               "score the class probability, class an index into class_names"}]
        post = {"inside_graph": True, "conf_threshold": conf_threshold, "score_rule": "score > conf_threshold",
                "iou_threshold": iou_threshold, "max_per_class": max_detections, "per_class": True}
    else:
        outputs = [{"name": "scores", "shape": [batch, anchors, classes], "columns": list(class_names),
                    "meaning": "per anchor, the probability of each class (sigmoid)"},
                   {"name": "boxes", "shape": [batch, anchors, 4], "columns": ["x1", "y1", "x2", "y2"],
                    "meaning": "per anchor, its box in input (letterboxed) pixels"}]
        post = {"inside_graph": False, "conf_threshold": PREDICT_CONF, "score_rule": "score > conf_threshold",
                "candidates": "every (anchor, class) pair above conf_threshold, at most pre_nms_top_k by score",
                "pre_nms_top_k": PRE_NMS_TOP_K, "iou_threshold": PREDICT_IOU,
                "per_class": True, "max_detections": PREDICT_MAX_DETECTIONS,
                "nms": "greedy, by score; a box goes when its IoU with a kept box of its class is > iou_threshold"}
    values = {
        VERSION_KEY: METADATA_VERSION, "class_names": list(class_names),
        "category_ids": None if category_ids is None else [int(i) for i in category_ids], "input_name": "images",
        "input_shape": [batch, 3, size, size], "input_size": size, "trained_size": trained_size,
        "strides": list(strides), "preprocess": PREPROCESS, "nms": nms, "postprocess": post, "outputs": outputs,
    }
    return {key: json.dumps(value) for key, value in values.items()}


def parse_metadata(props: dict[str, str], source: str) -> dict:
    """``metadata_props`` read back (JSON values); a file without them, or with a damaged one,
    is a ``UserError`` naming the key."""
    if VERSION_KEY not in props:
        raise UserError(source, "metadata_props", "no tinynas deploy metadata: export it again with `tinynas export`")
    values = {}
    for key in (VERSION_KEY, *KEYS):
        if key not in props:
            raise UserError(source, f"metadata_props.{key}", "missing")
        try:
            values[key] = json.loads(props[key])
        except ValueError:
            raise UserError(source, f"metadata_props.{key}", "not JSON text") from None
    if values[VERSION_KEY] != METADATA_VERSION:
        raise UserError(source, f"metadata_props.{VERSION_KEY}", f"unsupported version {values[VERSION_KEY]!r}")
    size = values["input_size"]
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise UserError(source, "metadata_props.input_size", f"expected a positive integer, got {size!r}")
    names = values["class_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise UserError(source, "metadata_props.class_names", "expected a list of class names")
    ids = values["category_ids"]
    if ids is not None and (not isinstance(ids, list) or len(ids) != len(names)
                            or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)):
        raise UserError(source, "metadata_props.category_ids", f"expected null or {len(names)} integers")
    if not isinstance(values["nms"], bool):
        raise UserError(source, "metadata_props.nms", f"expected true or false, got {values['nms']!r}")
    return values
