"""Inference on image files: letterbox -> detector -> decode -> NMS -> drawn images + COCO JSON."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, UnidentifiedImageError
from tqdm import tqdm

from ..atomic import atomic_write_bytes, atomic_write_text
from ..errors import UserError
from .coco import COCO_CATEGORY_IDS, COCO_CLASSES
from ..data.pipeline import to_tensor
from ..data.sample import EMPTY_BOXES, EMPTY_LABELS, Sample
from ..data.transforms import letterbox
from .nms import Detections, multiclass_nms

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
RESULTS_NAME = "predictions.json"


@dataclass(frozen=True)
class ImageResult:
    path: Path
    image_id: int
    detections: Detections  # in original image pixels


def list_images(source: str | os.PathLike) -> list[Path]:
    """An image file, or the images directly inside a folder (sorted by name)."""
    path = Path(source)
    if path.is_file():
        return [path]
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise UserError(str(path), "", f"no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return images
    raise UserError(str(path), "", "no such image file or folder")


def check_images(paths: Sequence[Path]) -> None:
    """Fail before any work if a file is not an image (only headers are read)."""
    for path in paths:
        try:
            with Image.open(path):
                pass
        except (UnidentifiedImageError, OSError, ValueError) as err:
            raise UserError(str(path), "", f"cannot read the image ({err.__class__.__name__})") from None


def read_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise UserError(str(path), "", f"cannot read the image ({err.__class__.__name__})") from None


def image_id_for(path: Path, position: int) -> int:
    """COCO file names are their ids (``000000000139.jpg`` -> 139); others get their position."""
    return int(path.stem) if path.stem.isdigit() else position


@torch.no_grad()
def detect_image(model: torch.nn.Module, image: Image.Image, size: int = 640, conf_threshold: float = 0.25,
                 iou_threshold: float = 0.7, max_detections: int = 100) -> Detections:
    """Detections of one image, boxes in its own pixels.

    The image is prepared exactly as validation images are in training (``tinynas.data``):
    letterboxed on grey, RGB scaled to [0, 1].
    """
    pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    placed, placement = letterbox(Sample(pixels, EMPTY_BOXES, EMPTY_LABELS), size)
    device = next(model.parameters()).device
    scores, boxes = model(to_tensor(placed.image)[None].to(device))
    found = multiclass_nms(scores[0].float(), boxes[0].float(), conf_threshold, iou_threshold, max_detections)
    original = torch.from_numpy(placement.to_original(found.boxes.cpu().numpy()))
    return Detections(original, found.scores.cpu(), found.classes.cpu())


def _colour(index: int) -> tuple[int, int, int]:
    # Well-spread hues from a fixed multiplicative hash keep each class's colour stable.
    h = (index * 2654435761) & 0xFFFFFF
    return (64 + (h & 0xFF) % 192, 64 + ((h >> 8) & 0xFF) % 192, 64 + ((h >> 16) & 0xFF) % 192)


def draw_detections(image: Image.Image, detections: Detections, class_names: Sequence[str]) -> Image.Image:
    canvas = image.copy()
    draw = ImageDraw.Draw(canvas)
    for box, score, cls in zip(detections.boxes.tolist(), detections.scores.tolist(), detections.classes.tolist()):
        colour = _colour(cls)
        draw.rectangle(box, outline=colour, width=2)
        label = f"{class_names[cls]} {score:.2f}"
        left, top, right, bottom = draw.textbbox((box[0], box[1]), label)
        y = max(0.0, box[1] - (bottom - top) - 2)
        draw.rectangle((box[0], y, box[0] + right - left + 4, y + bottom - top + 2), fill=colour)
        draw.text((box[0] + 2, y), label, fill=(0, 0, 0))
    return canvas


def category_ids(class_names: Sequence[str]) -> list[int]:
    """COCO's official ids for the COCO classes; otherwise the class index."""
    if tuple(class_names) == COCO_CLASSES:
        return list(COCO_CATEGORY_IDS)
    return list(range(len(class_names)))


def coco_results(results: Sequence[ImageResult], class_names: Sequence[str]) -> list[dict]:
    """COCO results format: one record per box, bbox as [x, y, width, height]."""
    ids = category_ids(class_names)
    records = []
    for result in results:
        d = result.detections
        for (x1, y1, x2, y2), score, cls in zip(d.boxes.tolist(), d.scores.tolist(), d.classes.tolist()):
            records.append({"image_id": result.image_id, "category_id": ids[cls],
                            "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                            "score": round(score, 5), "file_name": result.path.name})
    return records


def _encode(image: Image.Image, suffix: str) -> bytes:
    import io
    buffer = io.BytesIO()
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP"}.get(suffix, "PNG")
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def predict(model: torch.nn.Module, class_names: Sequence[str], source: str | os.PathLike,
            out_dir: str | os.PathLike, size: int = 640, conf_threshold: float = 0.25,
            iou_threshold: float = 0.7, max_detections: int = 100, draw: bool = True,
            progress: bool = True) -> list[ImageResult]:
    """Detect on every image of ``source``; write drawn images and ``predictions.json`` to ``out_dir``."""
    if size % 32:
        raise UserError("--size", "", f"must be a multiple of 32 (the deepest stride), got {size}")
    images = list_images(source)
    check_images(images)
    out = Path(out_dir)
    if draw and out.resolve() in {p.parent.resolve() for p in images}:
        raise UserError(str(out), "", "the output folder holds the input images; drawn copies would replace them")
    model.eval()
    results = []
    for position, path in enumerate(tqdm(images, desc="predict", unit="img", disable=not progress)):
        image = read_image(path)
        detections = detect_image(model, image, size, conf_threshold, iou_threshold, max_detections)
        results.append(ImageResult(path, image_id_for(path, position), detections))
        if draw:
            suffix = path.suffix.lower() if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".webp") else ".png"
            atomic_write_bytes(out / f"{path.stem}{suffix}", _encode(draw_detections(image, detections, class_names), suffix))
    # One record per line: a valid JSON list that still reads well and diffs cleanly.
    records = [json.dumps(r) for r in coco_results(results, class_names)]
    atomic_write_text(out / RESULTS_NAME, "[\n" + ",\n".join(records) + ("\n]\n" if records else "]\n"))
    return results
