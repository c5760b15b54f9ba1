"""Inference on image files: letterbox -> detector -> decode -> NMS -> drawn images + COCO JSON.

An image is decoded and letterboxed exactly as evaluation decodes a validation image
(``data.coco.load_rgb``: upright, 8-bit, a large JPEG at a reduced draft scale), so that
``predictions.json`` written on a COCO dataset (``annotations``) scores under pycocotools
what ``tinynas eval`` scores: the file's image ids and category ids, boxes and scores as
computed. Without a COCO file, image ids are unique: the file names' numbers
(``000000000139.jpg`` -> 139), other names numbered on from the largest (see ``image_ids``);
category ids are
the checkpoint's (its training set's), COCO's official ids for the 80 COCO classes, else
the class index (checkpoints that predate stored ids).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..atomic import atomic_write_bytes, atomic_write_text
from ..errors import UserError
from ..fileio import json_text
from ..memory import IMAGE_SUFFIXES, image_size, rgb_image
from .footprint import check_detector_fits
from ..memory import read_rgb as read_image  # noqa: F401  (the name callers of this module know)
from ..data.coco import CocoDataset, load_rgb
from ..data.collate import EpochBatchSampler, EpochSampler
from ..runfolder import check_new_file, check_new_folder, owned_folder
from .coco_classes import COCO_CATEGORY_IDS, COCO_CLASSES
from .detector import Detector
from .draw import draw_detections
from ..data.pipeline import to_tensor
from ..data.sample import EMPTY_BOXES, EMPTY_LABELS, Sample
from ..data.transforms import letterbox
from .input_layout import to_model_input
from .nms import PREDICT_CONF, PREDICT_IOU, PREDICT_MAX_DETECTIONS, Detections, multiclass_nms
from .model_recipe import check_input_size
from ..deploy.onnx_model import OnnxDetector

DRAWN_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")  # others are drawn as PNG
RESULTS_NAME = "predictions.json"


@dataclass(frozen=True)
class ImageResult:
    path: Path
    image_id: int
    detections: Detections  # in original image pixels


def list_images(source: str | os.PathLike) -> list[Path]:
    """An image file, or the images directly inside a folder (sorted by name; the files named
    as images, ``memory.IMAGE_SUFFIXES``: ``skipped_files`` lists the others)."""
    path = Path(source)
    if path.is_file():
        return [path]
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise UserError(str(path), "", f"no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return images
    raise UserError(str(path), "", "no such image file or folder")


def skipped_files(source: str | os.PathLike) -> list[Path]:
    """The files of a source folder that ``list_images`` leaves out (not named as images)."""
    path = Path(source)
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() not in IMAGE_SUFFIXES)


def dataset_images(dataset: CocoDataset) -> list[Path]:
    """The images a COCO file lists, in its order (what ``tinynas eval`` scores)."""
    return [dataset.image_path(i) for i in range(len(dataset))]


def image_ids(paths: Sequence[Path]) -> list[int]:
    """COCO file names are their ids (``000000000139.jpg`` -> 139); other names take the next
    ids after the largest such number, in order. When two names are the same number (``1.png``
    and ``01.png``), every image takes its place 1..N instead: ids are always unique."""
    numbers = [int(p.stem) if p.stem.isascii() and p.stem.isdigit() else None for p in paths]
    named = [n for n in numbers if n is not None]
    if len(set(named)) != len(named):
        return list(range(1, len(paths) + 1))
    following = iter(range(max(named, default=0) + 1, max(named, default=0) + len(paths) + 1))
    return [n if n is not None else next(following) for n in numbers]


def dataset_category_ids(class_names: Sequence[str], dataset: CocoDataset) -> list[int]:
    """The COCO file's category id of each class of a checkpoint: by position when the names
    agree (as evaluation maps them), by name when the checkpoint orders them otherwise."""
    if tuple(class_names) == tuple(dataset.names):
        return list(dataset.category_ids)
    source = str(dataset.annotations)
    by_name = dict(zip(dataset.names, dataset.category_ids))
    missing = [n for n in class_names if n not in by_name]
    if missing or len(by_name) != len(dataset.names) or len(set(class_names)) != len(class_names):
        raise UserError(source, "categories", f"the checkpoint's classes ({', '.join(class_names)}) are not "
                        f"this file's ({', '.join(dataset.names)}): predictions could not name the file's categories")
    return [by_name[n] for n in class_names]


@torch.no_grad()
def detect_image(model: torch.nn.Module, image: Image.Image, size: int = 640, conf_threshold: float = 0.25,
                 iou_threshold: float = 0.7, max_detections: int = 100) -> Detections:
    """Detections of one image, boxes in its own pixels.

    The image is prepared exactly as validation images are in training (``tinynas.data``):
    letterboxed on grey, RGB scaled to [0, 1].
    """
    if isinstance(model, Detector):  # any module with the Detector's outputs is accepted
        check_input_size(model.recipe, size)
    pixels = np.asarray(rgb_image(image, "<image>"), dtype=np.uint8)
    return detect_batch(model, [pixels], size, conf_threshold, iou_threshold, max_detections)[0]


def prepared_input(path: str | os.PathLike, size: int) -> torch.Tensor:
    """``[1, 3, size, size]`` in [0, 1]: the image file as predict feeds it to a model."""
    sample, _ = letterbox(Sample(load_rgb(path, size), EMPTY_BOXES, EMPTY_LABELS), size)
    return to_tensor(sample.image)[None]


@torch.no_grad()
def detect_batch(model: torch.nn.Module | OnnxDetector, images: Sequence[np.ndarray], size: int = 640, conf_threshold: float = 0.25,
                 iou_threshold: float = 0.7, max_detections: int = 100,
                 original_sizes: Sequence[tuple[int, int]] | None = None) -> list[Detections]:
    """Detections of ``uint8 [H, W, 3]`` RGB images in one forward pass, boxes in each image's
    pixels, or in its ``original_sizes`` (width, height) when it was decoded at a reduced scale.
    ``model`` is a detector module, or an exported ONNX one (``deploy.onnx_model``).
    (Batched convolutions round differently from single ones: the same batches as evaluation's
    give the same scores.)"""
    placed, placements = [], []
    for i, pixels in enumerate(images):
        sample, placement = letterbox(Sample(pixels, EMPTY_BOXES, EMPTY_LABELS), size)
        placed.append(to_tensor(sample.image))
        placements.append(placement if original_sizes is None else placement.against(*original_sizes[i], size))
    if isinstance(model, OnnxDetector):
        kept_all = model.detect(torch.stack(placed), conf_threshold, iou_threshold, max_detections)
    else:
        scores, boxes = model(to_model_input(torch.stack(placed), next(model.parameters()).device))
        kept_all = [multiclass_nms(scores[i].float(), boxes[i].float(), conf_threshold, iou_threshold, max_detections)
                    for i in range(len(placed))]
    found = []
    for kept, placement in zip(kept_all, placements):
        original = torch.from_numpy(placement.to_original(kept.boxes.cpu().numpy()))
        found.append(Detections(original, kept.scores.cpu(), kept.classes.cpu()))
    return found


def results_category_ids(class_names: Sequence[str], stored: Sequence[int] | None = None) -> list[int]:
    """The checkpoint's ``stored`` ids; else COCO's official ids for the COCO classes; else the
    class index (checkpoints written before the ids were kept)."""
    if stored is not None:
        return list(stored)
    if tuple(class_names) == COCO_CLASSES:
        return list(COCO_CATEGORY_IDS)
    return list(range(len(class_names)))


def coco_results(results: Sequence[ImageResult], class_names: Sequence[str],
                 ids: Sequence[int] | None = None) -> list[dict]:
    """COCO results format: one record per box, bbox as [x, y, width, height] in the image's
    pixels, unrounded (rounding would move a box across an IoU threshold of the evaluation)."""
    ids = results_category_ids(class_names) if ids is None else list(ids)
    records = []
    for result in results:
        d = result.detections
        for (x1, y1, x2, y2), score, cls in zip(d.boxes.tolist(), d.scores.tolist(), d.classes.tolist()):
            records.append({"image_id": result.image_id, "category_id": ids[cls],
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score, "file_name": result.path.name})
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


def _inputs(source, annotations, class_names: Sequence[str], category_ids) -> tuple[list, list, list, list]:
    """The images to predict, their ids and (width, height), and the category id of each class:
    from a COCO file over the folder ``source``, or from the images found at ``source``."""
    if annotations is None:
        images = list_images(source)
        sizes = [image_size(path) for path in images]  # only headers are read
        return images, image_ids(images), sizes, results_category_ids(class_names, category_ids)
    if not Path(source).is_dir():
        raise UserError(str(source), "--source", "with --annotations, give the folder of the file's images")
    dataset = CocoDataset(annotations, source)
    images = dataset_images(dataset)
    for path in images:
        image_size(path)
    sizes = [(r.width, r.height) for r in dataset.records]  # what evaluation maps boxes back to
    return images, [r.image_id for r in dataset.records], sizes, dataset_category_ids(class_names, dataset)


def predict(model: Detector | OnnxDetector, class_names: Sequence[str], source: str | os.PathLike,
            out_dir: str | os.PathLike, size: int = 640, conf_threshold: float = PREDICT_CONF,
            iou_threshold: float = PREDICT_IOU, max_detections: int = PREDICT_MAX_DETECTIONS, draw: bool = True,
            progress: bool = True, force: bool = False, annotations: str | os.PathLike | None = None,
            category_ids: Sequence[int] | None = None, batch_size: int = 8) -> list[ImageResult]:
    """Detect on every image of ``source``; write drawn images and ``predictions.json`` to ``out_dir``.

    With ``annotations`` (a COCO file whose images live in the folder ``source``), the images
    it lists are predicted, and the results carry its image and category ids. Otherwise
    ``category_ids`` (the checkpoint's, when it stores them) name the classes; see the module
    docstring for the fallbacks. ``batch_size`` images go through the model at once; with
    evaluation's batch size (``eval.batch_size``, 8 by default) the results are exactly
    evaluation's. Existing output files are replaced only with ``force``.
    ``model`` may be an exported ONNX detector (``OnnxDetector``): it runs at the size it was
    exported at, one image at a time.
    Everything that can be checked (size, images, outputs, memory) is checked before the
    first image is decoded.
    """
    if isinstance(model, OnnxDetector):
        if size != model.size:
            raise UserError(model.source, "--size", f"this export takes {model.size} px inputs, not {size}; "
                            "export the checkpoint again at that size")
    else:
        check_input_size(model.recipe, size)
    images, ids, sizes, classes = _inputs(source, annotations, class_names, category_ids)
    out = Path(out_dir)
    _check_outputs(images, out, draw, force)
    if not isinstance(model, OnnxDetector):
        device = next(model.parameters()).device
        check_detector_fits(model.recipe, size, batch_size, fused=model.is_fused, device=device, source="--size",
                            field="", hint="choose a smaller --size or --batch-size")
        model.eval()
    # The batches evaluation forms over the same images (in order; a last single image joins the one before).
    batches = [[item.index for item in batch]
               for batch in EpochBatchSampler(EpochSampler(len(images), shuffle=False), batch_size)]
    results = []
    with owned_folder(out, "output folder"), tqdm(total=len(images), desc="predict", unit="img",
                                                  disable=not progress) as bar:
        for batch in batches:
            # Decoded as evaluation decodes them (a large JPEG at a draft scale), mapped back to the full image.
            found = detect_batch(model, [load_rgb(images[i], size) for i in batch], size, conf_threshold,
                                 iou_threshold, max_detections, [sizes[i] for i in batch])
            for i, detections in zip(batch, found):
                path = images[i]
                results.append(ImageResult(path, ids[i], detections))
                if draw:
                    name = drawn_name(path)
                    atomic_write_bytes(out / name, _encode(draw_detections(read_image(path), detections, class_names),
                                                           Path(name).suffix))
            bar.update(len(batch))
        # One record per line: a valid JSON list that still reads well and diffs cleanly.
        records = [json_text(r) for r in coco_results(results, class_names, classes)]
        atomic_write_text(out / RESULTS_NAME, "[\n" + ",\n".join(records) + ("\n]\n" if records else "]\n"))
    return results
