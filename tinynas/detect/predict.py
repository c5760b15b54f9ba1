"""Inference on image files: letterbox -> detector -> decode -> NMS -> drawn images + COCO JSON."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm import tqdm

from ..atomic import atomic_write_bytes, atomic_write_text
from ..errors import UserError
from ..memory import image_size
from .footprint import check_detector_fits
from ..memory import read_rgb as read_image  # noqa: F401  (the name callers of this module know)
from ..runfolder import check_new_file, check_new_folder, owned_folder
from .coco_classes import COCO_CATEGORY_IDS, COCO_CLASSES
from .detector import Detector
from ..data.pipeline import to_tensor
from ..data.sample import EMPTY_BOXES, EMPTY_LABELS, Sample
from ..data.transforms import letterbox
from .nms import Detections, multiclass_nms
from .model_recipe import check_input_size

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
DRAWN_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")  # others are drawn as PNG
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
    """Fail before any work if a file is not an image or is too large (only headers are read)."""
    for path in paths:
        image_size(path)


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
    if isinstance(model, Detector):  # any module with the Detector's outputs is accepted
        check_input_size(model.recipe, size)
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


def drawn_name(path: Path) -> str:
    suffix = path.suffix.lower()
    return f"{path.stem}{suffix if suffix in DRAWN_SUFFIXES else '.png'}"


def _check_outputs(images: Sequence[Path], out: Path, draw: bool, force: bool) -> None:
    """Refuse, before any work, to replace a file unless ``force``, or to write one name twice."""
    check_new_folder(out, "--out", force=True)  # refuses a file; a folder may hold other things
    check_new_file(out / RESULTS_NAME, "--out", force)
    if not draw:
        return
    if out.resolve() in {p.parent.resolve() for p in images}:
        raise UserError(str(out), "--out", "the output folder holds the input images; drawn copies would replace them")
    drawn: dict[str, Path] = {}
    for path in images:
        name = drawn_name(path)
        if name in drawn:
            raise UserError(str(path), "", f"would be drawn to {name}, as {drawn[name].name} is; rename one of them")
        drawn[name] = path
        check_new_file(out / name, "--out", force)


def predict(model: Detector, class_names: Sequence[str], source: str | os.PathLike,
            out_dir: str | os.PathLike, size: int = 640, conf_threshold: float = 0.25,
            iou_threshold: float = 0.7, max_detections: int = 100, draw: bool = True,
            progress: bool = True, force: bool = False) -> list[ImageResult]:
    """Detect on every image of ``source``; write drawn images and ``predictions.json`` to ``out_dir``.

    Existing output files are replaced only with ``force``. Everything that can be checked
    (size, images, outputs, memory) is checked before the first image is decoded.
    """
    check_input_size(model.recipe, size)
    images = list_images(source)
    check_images(images)
    out = Path(out_dir)
    _check_outputs(images, out, draw, force)
    device = next(model.parameters()).device
    check_detector_fits(model.recipe, size, 1, fused=model.is_fused, device=device, source="--size", field="",
                        hint="choose a smaller --size")
    model.eval()
    results = []
    with owned_folder(out, "output folder"):
        for position, path in enumerate(tqdm(images, desc="predict", unit="img", disable=not progress)):
            image = read_image(path)
            detections = detect_image(model, image, size, conf_threshold, iou_threshold, max_detections)
            results.append(ImageResult(path, image_id_for(path, position), detections))
            if draw:
                name = drawn_name(path)
                atomic_write_bytes(out / name, _encode(draw_detections(image, detections, class_names),
                                                       Path(name).suffix))
        # One record per line: a valid JSON list that still reads well and diffs cleanly.
        records = [json.dumps(r) for r in coco_results(results, class_names)]
        atomic_write_text(out / RESULTS_NAME, "[\n" + ",\n".join(records) + ("\n]\n" if records else "]\n"))
    return results
