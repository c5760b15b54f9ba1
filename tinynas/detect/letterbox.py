"""Letterbox: resize keeping the aspect ratio, pad to a square, and map boxes back."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

PAD_VALUE = 114  # the grey YOLO-family detectors are trained to treat as empty border


@dataclass(frozen=True)
class LetterboxInfo:
    """How an image was placed: ``model = original * scale + (pad_x, pad_y)``."""

    scale: float
    pad_x: int
    pad_y: int
    width: int
    height: int


def letterbox(image: Image.Image, size: int) -> tuple[torch.Tensor, LetterboxInfo]:
    """An RGB image -> a ``[3, size, size]`` float tensor in 0..255, and its placement."""
    image = image.convert("RGB")
    w, h = image.size
    scale = min(size / w, size / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = image.resize((new_w, new_h), Image.BILINEAR)
    canvas = Image.new("RGB", (size, size), (PAD_VALUE,) * 3)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    canvas.paste(resized, (pad_x, pad_y))
    array = np.asarray(canvas, dtype=np.float32).transpose(2, 0, 1).copy()
    return torch.from_numpy(array), LetterboxInfo(scale, pad_x, pad_y, w, h)


def unletterbox_boxes(boxes: torch.Tensor, info: LetterboxInfo) -> torch.Tensor:
    """Model-input xyxy boxes -> original-image boxes, clipped to the image."""
    out = boxes.clone()
    out[:, [0, 2]] = ((out[:, [0, 2]] - info.pad_x) / info.scale).clamp(0, info.width)
    out[:, [1, 3]] = ((out[:, [1, 3]] - info.pad_y) / info.scale).clamp(0, info.height)
    return out
