"""Detections drawn so that they read on real photos: line width and label size follow the
image's size, labels stay inside the image, each class has a saturated colour and its label
text is black or white, whichever contrasts more with it."""

from __future__ import annotations

import colorsys
from functools import lru_cache
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

from .nms import Detections

# Hues a golden-ratio step apart: neighbouring class indices never look alike, and a class
# keeps its colour whatever else is in the picture.
GOLDEN = 0.6180339887498949
SATURATION, VALUE = 0.85, 0.95
WHITE, BLACK = (255, 255, 255), (0, 0, 0)


def class_colour(index: int) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((0.02 + index * GOLDEN) % 1.0, SATURATION, VALUE)
    return round(r * 255), round(g * 255), round(b * 255)


def relative_luminance(colour: Sequence[int]) -> float:
    """WCAG 2's relative luminance of an sRGB colour (0 black, 1 white)."""
    def linear(c: float) -> float:
        c /= 255.0
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (linear(c) for c in colour[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(a: Sequence[int], b: Sequence[int]) -> float:
    la, lb = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def text_colour(background: Sequence[int]) -> tuple[int, int, int]:
    """Black or white, whichever contrasts more with ``background``."""
    return BLACK if contrast_ratio(background, BLACK) >= contrast_ratio(background, WHITE) else WHITE


def line_width(width: int, height: int) -> int:
    """Box outline width: ~0.3% of the image's mean side, 2 px at least."""
    return max(2, round((width + height) / 2 * 0.003))


def font_size(width: int, height: int) -> int:
    """Label text height: ~2% of the image's mean side, 11 px at least (legible at 100%)."""
    return max(11, round((width + height) / 2 * 0.02))


@lru_cache(maxsize=16)
def label_font(size: int):
    """Pillow's own scalable font at ``size`` px; its fixed bitmap font where Pillow is older
    than 10.1 or built without FreeType."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def label_box(box: Sequence[float], text_width: int, text_height: int, image_width: int, image_height: int,
              pad: int) -> tuple[float, float, float, float]:
    """Where a label of this size goes: on the box's top edge, above it when there is room,
    else just inside it; moved left or down as needed to lie wholly in the image."""
    w, h = text_width + 2 * pad, text_height + 2 * pad
    x0 = min(max(0.0, box[0]), max(0.0, image_width - w))
    y0 = box[1] - h if box[1] - h >= 0 else max(0.0, box[1])
    y0 = min(y0, max(0.0, image_height - h))
    return x0, y0, x0 + w, y0 + h


def draw_detections(image: Image.Image, detections: Detections, class_names: Sequence[str],
                    scores: bool = True) -> Image.Image:
    """``image`` with each detection's box and label (class and score; the class alone without
    ``scores``, as for a dataset's own boxes)."""
    canvas = image.copy()
    draw = ImageDraw.Draw(canvas)
    width, height = canvas.size
    lw, font = line_width(width, height), label_font(font_size(width, height))
    pad = max(1, lw // 2)
    for box, score, cls in zip(detections.boxes.tolist(), detections.scores.tolist(), detections.classes.tolist()):
        colour = class_colour(cls)
        draw.rectangle(box, outline=colour, width=lw)
        label = f"{class_names[cls]} {score:.2f}" if scores else class_names[cls]
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        x0, y0, x1, y1 = label_box(box, right - left, bottom - top, width, height, pad)
        draw.rectangle((x0, y0, x1, y1), fill=colour)
        draw.text((x0 + pad - left, y0 + pad - top), label, fill=text_colour(colour), font=font)
    return canvas
