"""Geometric and colour augmentations on :class:`Sample` values, with Pillow and numpy only.

Coordinates are continuous pixel coordinates: pixel ``(i, j)`` covers ``[j, j+1) x [i, i+1)``,
so a box ``[x0, y0, x1, y1]`` covers columns ``x0..x1-1``. Every geometric transform is a
3x3 matrix mapping input coordinates to output coordinates; the image is warped with its
inverse (Pillow samples the input at the inverse-mapped position of each output pixel),
and boxes are mapped through their four corners, so a rotated or sheared box becomes the
bounding box of its transformed corners. Random draws come from a ``numpy`` Generator the
caller owns, which is what makes a pipeline repeatable per (seed, epoch, index).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .sample import Sample

PAD_VALUE = 114  # grey border, the value YOLO-family detectors learn to read as "nothing here"
FILL = (PAD_VALUE, PAD_VALUE, PAD_VALUE)


# ---------------------------------------------------------------- letterbox

@dataclass(frozen=True)
class Placement:
    """How a letterboxed image sits in the model input: ``model = original * scale + pad``."""

    scale: float
    pad_x: int
    pad_y: int
    width: int  # original width
    height: int  # original height

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Model-input ``xyxy`` boxes -> boxes in the original image, clipped to it."""
        out = np.asarray(boxes, dtype=np.float32).copy()
        out[:, [0, 2]] = np.clip((out[:, [0, 2]] - self.pad_x) / self.scale, 0, self.width)
        out[:, [1, 3]] = np.clip((out[:, [1, 3]] - self.pad_y) / self.scale, 0, self.height)
        return out

    def against(self, width: int, height: int, size: int) -> "Placement":
        """This placement expressed against a ``width x height`` original: an image decoded at a
        reduced scale (a JPEG draft) was letterboxed from fewer pixels, but boxes must map back to
        the full image."""
        if (self.width, self.height) == (width, height):
            return self
        return Placement(min(size / width, size / height), self.pad_x, self.pad_y, width, height)


def letterbox(sample: Sample, size: int) -> tuple[Sample, Placement]:
    """Resize keeping the aspect ratio so the long side is ``size``, centre on a grey square."""
    h, w = sample.height, sample.width
    scale = min(size / w, size / h)
    new_w, new_h = fitted_size(w, h, size)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    resized = Image.fromarray(sample.image).resize((new_w, new_h), Image.BILINEAR)
    canvas = Image.new("RGB", (size, size), FILL)
    canvas.paste(resized, (pad_x, pad_y))
    offset = np.array([pad_x, pad_y, pad_x, pad_y], dtype=np.float32)
    # Boxes follow the actual resized extent, so rounding of new_w/new_h cannot shift them.
    factor = np.array([new_w / w, new_h / h] * 2, dtype=np.float32)
    out = sample.with_(
        image=np.asarray(canvas, dtype=np.uint8).copy(),
        boxes=(sample.boxes * factor + offset).astype(np.float32),
        ignore=(sample.ignore * factor + offset).astype(np.float32),
    )
    return out, Placement(scale, pad_x, pad_y, w, h)


def fitted_size(width: int, height: int, size: int) -> tuple[int, int]:
    """``(width, height)`` scaled so the long side is ``size``: a letterbox's and a mosaic tile's."""
    scale = size / max(height, width)
    return max(1, round(width * scale)), max(1, round(height * scale))


def shrink_to_fit(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` resized (bilinear) so its long side is ``size`` if it is longer, else itself:
    the pixels a letterbox or a mosaic tile makes of it, so a cache can keep these instead."""
    h, w = image.shape[:2]
    if max(h, w) <= size:
        return image
    return np.asarray(Image.fromarray(image).resize(fitted_size(w, h, size), Image.BILINEAR), dtype=np.uint8)


def resize_to_fit(sample: Sample, size: int) -> Sample:
    """Scale so the long side is ``size`` (no padding): how mosaic tiles are prepared."""
    h, w = sample.height, sample.width
    new_w, new_h = fitted_size(w, h, size)
    if (new_w, new_h) == (w, h):
        return sample
    image = np.asarray(Image.fromarray(sample.image).resize((new_w, new_h), Image.BILINEAR), dtype=np.uint8)
    factor = np.array([new_w / w, new_h / h] * 2, dtype=np.float32)
    return sample.with_(image=image.copy(), boxes=sample.boxes * factor, ignore=sample.ignore * factor)


# ---------------------------------------------------------------- boxes

def _corners(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The four mapped corners of each box: ``[N, 4, 2]``."""
    x0, y0, x1, y1 = boxes.T
    xs = np.stack([x0, x1, x1, x0], axis=1)
    ys = np.stack([y0, y0, y1, y1], axis=1)
    tx = matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2]
    ty = matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2]
    return np.stack([tx, ty], axis=-1)


def _clip_polygon(points: list, width: float, height: float) -> list:
    """Sutherland-Hodgman clipping of a convex polygon to ``[0, width] x [0, height]``."""
    for axis, limit, keep_below in ((0, 0.0, False), (0, width, True), (1, 0.0, False), (1, height, True)):
        if not points:
            break
        inside = [(p[axis] <= limit) if keep_below else (p[axis] >= limit) for p in points]
        clipped = []
        for i, p in enumerate(points):
            q, q_inside = points[i - 1], inside[i - 1]
            if inside[i] != q_inside:
                t = (limit - q[axis]) / (p[axis] - q[axis])
                clipped.append((q[0] + t * (p[0] - q[0]), q[1] + t * (p[1] - q[1])))
            if inside[i]:
                clipped.append(p)
        points = clipped
    return points


def transform_boxes(boxes: np.ndarray, matrix: np.ndarray, frame: tuple[int, int] | None = None) -> np.ndarray:
    """The ``xyxy`` bounding box of each box's four corners mapped by a 3x3 affine matrix.

    With ``frame`` (width, height), the bounding box is that of the mapped quadrilateral's
    part inside the frame. Clipping the corner box instead would be loose for a rotated box
    cut by the border: its outer corner lies outside, yet widens the clipped box.
    A box entirely outside comes back with zero width or height.
    """
    if len(boxes) == 0:
        return np.zeros((0, 4), dtype=np.float32)
    corners = _corners(np.asarray(boxes, dtype=np.float64), matrix)
    out = np.concatenate([corners.min(1), corners.max(1)], axis=1)
    if frame is None:
        return out.astype(np.float32)
    width, height = frame
    out = clip_boxes(out, width, height)
    cut = (corners[..., 0].min(1) < 0) | (corners[..., 1].min(1) < 0) | \
          (corners[..., 0].max(1) > width) | (corners[..., 1].max(1) > height)
    for i in np.nonzero(cut)[0]:
        polygon = _clip_polygon([tuple(p) for p in corners[i]], width, height)
        if polygon:
            xs, ys = [p[0] for p in polygon], [p[1] for p in polygon]
            out[i] = (min(xs), min(ys), max(xs), max(ys))
        else:
            out[i] = (0, 0, 0, 0)
    return out.astype(np.float32)


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    out = boxes.copy()
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return out


def keep_boxes(before: np.ndarray, after: np.ndarray, area_gain: float = 1.0, min_size: float = 2.0,
               min_area_ratio: float = 0.1, max_aspect: float = 20.0) -> np.ndarray:
    """Which transformed boxes are still worth learning from.

    ``before`` are the boxes before the transform (in its input pixels), ``after`` the
    transformed and clipped ones, ``area_gain`` how much the transform scales areas. A box
    is dropped when it is thinner than ``min_size`` pixels, kept less than
    ``min_area_ratio`` of its expected area (mostly pushed out of the frame), or became a
    sliver (aspect ratio above ``max_aspect``).
    """
    w = after[:, 2] - after[:, 0]
    h = after[:, 3] - after[:, 1]
    expected = (before[:, 2] - before[:, 0]) * (before[:, 3] - before[:, 1]) * area_gain
    aspect = np.maximum(w / np.maximum(h, 1e-6), h / np.maximum(w, 1e-6))
    return (w > min_size) & (h > min_size) & (w * h > min_area_ratio * np.maximum(expected, 1e-6)) & (aspect < max_aspect)


def drop_degenerate(sample: Sample, min_size: float = 2.0) -> Sample:
    """Remove boxes (and ignore regions) with width or height not above ``min_size``."""
    keep = ((sample.boxes[:, 2] - sample.boxes[:, 0]) > min_size) & ((sample.boxes[:, 3] - sample.boxes[:, 1]) > min_size)
    ig = sample.ignore
    keep_ig = ((ig[:, 2] - ig[:, 0]) > 0) & ((ig[:, 3] - ig[:, 1]) > 0)
    return sample.with_(boxes=sample.boxes[keep], labels=sample.labels[keep], ignore=ig[keep_ig])


# ---------------------------------------------------------------- affine

def affine_matrix(in_size: tuple[int, int], out_size: tuple[int, int], degrees: float = 0.0,
                  scale: float = 1.0, shear_x: float = 0.0, shear_y: float = 0.0,
                  translate_x: float = 0.0, translate_y: float = 0.0) -> np.ndarray:
    """Rotate/scale/shear about the input centre, then place it at the output centre plus a shift.

    Sizes are ``(width, height)``; angles in degrees (positive rotates counter-clockwise on
    screen); translations in pixels of the output.
    """
    centre = np.array([[1, 0, -in_size[0] / 2], [0, 1, -in_size[1] / 2], [0, 0, 1]], dtype=np.float64)
    a = math.radians(degrees)
    rotate = np.array([[math.cos(a) * scale, math.sin(a) * scale, 0],
                       [-math.sin(a) * scale, math.cos(a) * scale, 0],
                       [0, 0, 1]], dtype=np.float64)
    shear = np.array([[1, math.tan(math.radians(shear_x)), 0],
                      [math.tan(math.radians(shear_y)), 1, 0],
                      [0, 0, 1]], dtype=np.float64)
    place = np.array([[1, 0, out_size[0] / 2 + translate_x], [0, 1, out_size[1] / 2 + translate_y], [0, 0, 1]],
                     dtype=np.float64)
    return place @ shear @ rotate @ centre


def warp_affine(sample: Sample, matrix: np.ndarray, out_size: tuple[int, int], filter_boxes: bool = True,
                min_size: float = 2.0) -> Sample:
    """Warp the image and its boxes by ``matrix`` into an ``out_size`` (width, height) frame."""
    inverse = np.linalg.inv(matrix)
    image = Image.fromarray(sample.image).transform(
        out_size, Image.AFFINE, data=tuple(inverse[:2].ravel()), resample=Image.BILINEAR, fillcolor=FILL)
    width, height = out_size
    boxes = transform_boxes(sample.boxes, matrix, out_size)
    ignore = transform_boxes(sample.ignore, matrix, out_size)
    labels = sample.labels
    if filter_boxes:
        area_gain = abs(float(np.linalg.det(matrix[:2, :2])))
        keep = keep_boxes(sample.boxes, boxes, area_gain, min_size=min_size)
        boxes, labels = boxes[keep], labels[keep]
        ignore = ignore[((ignore[:, 2] - ignore[:, 0]) > 0) & ((ignore[:, 3] - ignore[:, 1]) > 0)]
    return sample.with_(image=np.asarray(image, dtype=np.uint8).copy(), boxes=boxes.astype(np.float32),
                        labels=labels, ignore=ignore.astype(np.float32))


@dataclass(frozen=True)
class AffineRange:
    """Ranges the random affine draws from (DAMO-YOLO's defaults)."""

    degrees: float = 10.0  # rotation in [-degrees, degrees]
    translate: float = 0.2  # shift in [-translate, translate] x output size
    scale: tuple[float, float] = (0.1, 2.0)  # zoom factor range
    shear: float = 2.0  # shear angle in [-shear, shear] degrees, on each axis


def random_affine(sample: Sample, rng: np.random.Generator, out_size: tuple[int, int],
                  ranges: AffineRange = AffineRange(), min_size: float = 2.0) -> Sample:
    """Random rotation, zoom, shear and shift of ``sample`` into an ``out_size`` frame."""
    matrix = affine_matrix(
        (sample.width, sample.height), out_size,
        degrees=rng.uniform(-ranges.degrees, ranges.degrees),
        scale=rng.uniform(*ranges.scale),
        shear_x=rng.uniform(-ranges.shear, ranges.shear),
        shear_y=rng.uniform(-ranges.shear, ranges.shear),
        translate_x=rng.uniform(-ranges.translate, ranges.translate) * out_size[0],
        translate_y=rng.uniform(-ranges.translate, ranges.translate) * out_size[1],
    )
    return warp_affine(sample, matrix, out_size, min_size=min_size)


# ---------------------------------------------------------------- flip and colour

def hflip(sample: Sample) -> Sample:
    """Mirror left-right."""
    w = sample.width

    def mirror(boxes: np.ndarray) -> np.ndarray:
        out = boxes.copy()
        out[:, 0], out[:, 2] = w - boxes[:, 2], w - boxes[:, 0]
        return out

    return sample.with_(image=sample.image[:, ::-1].copy(), boxes=mirror(sample.boxes), ignore=mirror(sample.ignore))


def random_hflip(sample: Sample, rng: np.random.Generator, prob: float = 0.5) -> Sample:
    return hflip(sample) if rng.random() < prob else sample


def hsv_jitter(sample: Sample, rng: np.random.Generator, hue: float = 0.015, saturation: float = 0.7,
               value: float = 0.4) -> Sample:
    """Random gains on hue (a rotation), saturation and value (multiplicative), YOLOv5 style."""
    if hue == saturation == value == 0:
        return sample
    gains = rng.uniform(-1, 1, 3) * np.array([hue, saturation, value]) + 1
    x = np.arange(256, dtype=np.float64)
    # Pillow's HSV keeps hue in 0..255, so a hue gain wraps around the colour circle.
    lut_h = ((x * gains[0]) % 256).astype(np.uint8)
    lut_s = np.clip(x * gains[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x * gains[2], 0, 255).astype(np.uint8)
    hsv = np.asarray(Image.fromarray(sample.image).convert("HSV"), dtype=np.uint8)
    channels = [Image.fromarray(lut[hsv[..., i]]) for i, lut in enumerate((lut_h, lut_s, lut_v))]
    rgb = Image.merge("HSV", channels).convert("RGB")
    return sample.with_(image=np.asarray(rgb, dtype=np.uint8).copy())
