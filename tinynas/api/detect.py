"""Commands on a trained detector: ``predict`` and ``export``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError

if TYPE_CHECKING:
    from ..deploy.onnx_export import ExportCheck
    from ..detect.model_recipe import ModelRecipe
    from ..detect.predict import ImageResult


def _onnx_weights(weights: str | os.PathLike) -> bool:
    return str(weights).lower().endswith(".onnx")


def predict_images(weights: str | os.PathLike, source: str | os.PathLike, out_dir: str | os.PathLike,
                   size: int | None = None, conf_threshold: float = 0.25, iou_threshold: float = 0.7,
                   max_detections: int = 100, draw: bool = True, progress: bool = True, force: bool = False,
                   annotations: str | os.PathLike | None = None, batch_size: int = 8,
                   recipe: ModelRecipe | str | None = None) -> list[ImageResult]:
    """``tinynas predict``: detect with a checkpoint, or with an exported ``.onnx`` file (run by
    onnxruntime as its metadata describes it), on the images of ``source``
    (``detect.predict.predict`` writes the outputs). ``size`` defaults to the size the checkpoint
    was trained at (an old checkpoint without one: 640), an export's to the size it takes;
    ``recipe`` (a model recipe, its file or a shipped name) only checks the class count."""
    from ..checkpoint import load_detector_checkpoint, resolve_size
    from ..detect.predict import predict

    if isinstance(recipe, str):
        from ..detect.model_recipe import load_model_recipe

        recipe = load_model_recipe(recipe)

    if _onnx_weights(weights):
        from ..deploy.onnx_model import OnnxDetector

        model = OnnxDetector(weights)
        if recipe is not None and recipe.head.num_classes != len(model.class_names):
            raise UserError(str(weights), "class_names", f"the export has {len(model.class_names)} classes but the "
                            f"recipe has {recipe.head.num_classes}")
        names, ids, run_size = model.class_names, model.category_ids, model.size if size is None else size
    else:
        model, ckpt = load_detector_checkpoint(weights, recipe)
        names, ids, run_size = ckpt.class_names, ckpt.category_ids, resolve_size(ckpt.size, size, str(weights))
    return predict(model, names, source, out_dir, run_size, conf_threshold, iou_threshold, max_detections,
                   draw=draw, progress=progress, force=force, annotations=annotations, category_ids=ids,
                   batch_size=batch_size)


def export_checkpoint(weights: str | os.PathLike, out: str | os.PathLike | None = None, size: int | None = None,
                      nms: bool = False, conf_threshold: float = 0.05, iou_threshold: float = 0.7,
                      max_detections: int = 100, force: bool = False, check: bool = False,
                      check_image: str | os.PathLike | None = None) -> tuple[Path, ExportCheck | None]:
    """``tinynas export``: the checkpoint as ONNX (default: its name with ``.onnx``), at the size it
    was trained at unless ``size``; its class names, ids and sizes go into the file's metadata.
    With ``check`` (or a ``check_image``), onnxruntime's outputs are compared with torch's on a
    real-range input (``deploy.onnx_export.check_export``); the comparison is returned, pass or fail."""
    from ..checkpoint import load_detector_checkpoint, resolve_size
    from ..deploy.onnx_export import check_export, export_onnx

    model, ckpt = load_detector_checkpoint(weights)
    path = Path(out) if out is not None else Path(weights).with_suffix(".onnx")
    if path.resolve() == Path(weights).resolve():
        raise UserError(str(path), "", "the export would overwrite the checkpoint")
    run_size = resolve_size(ckpt.size, size, str(weights))
    export_onnx(model, path, run_size, nms=nms, conf_threshold=conf_threshold, iou_threshold=iou_threshold,
                max_detections=max_detections, force=force, class_names=ckpt.class_names, trained_size=ckpt.size,
                category_ids=ckpt.category_ids)
    if not (check or check_image is not None):
        return path, None
    return path, check_export(path, model, run_size, nms, conf_threshold, iou_threshold, max_detections,
                              image=check_image)




def skipped_image_files(source: str | os.PathLike) -> list[Path]:
    """The files of a predict source folder that are not named as images (left out, said so)."""
    from ..detect.predict import skipped_files

    return skipped_files(source)


def predictions_file(out_dir: str | os.PathLike) -> Path:
    """Where ``predict_images`` writes its COCO-style detections."""
    from ..detect.predict import RESULTS_NAME

    return Path(out_dir) / RESULTS_NAME


def model_info(model: str, size: int = 640, fused: bool = True) -> dict:
    """``tinynas model info``: a model recipe's parts (params and FLOPs each, as ``PartCost``), a
    line describing them, and the bytes needed to predict one image and to train at batch 1."""
    from ..detect.costs import recipe_costs
    from ..detect.footprint import detector_bytes
    from ..detect.model_recipe import load_model_recipe

    recipe = load_model_recipe(model)
    return {"recipe": recipe, "parts": recipe_costs(recipe, size, fused=fused), "description": describe_parts(recipe),
            "predict_bytes": detector_bytes(recipe, size, 1, fused=fused),
            "train_bytes": detector_bytes(recipe, size, 1, training=True)}


def describe_parts(recipe: ModelRecipe) -> str:
    """One line naming the wrap, the neck and head types and their settings."""
    from ..detect.heads import HEADS
    from ..detect.necks import NECKS

    b, n, h = recipe.backbone, recipe.neck, recipe.head
    wrap = f"{b.wrap} wrap{' (csp_stack)' if b.csp_stack else ''}, {b.act}, levels {list(b.out_indices)}"
    neck = f"{n.type} neck {_options_text(n, NECKS)} out {list(n.out_channels)}"
    head = f"{h.type} head {_options_text(h, HEADS)} reg_max {h.reg_max}"
    return f"{wrap}; {neck}; {head}; {h.num_classes} classes"


def _options_text(section, registry) -> str:
    """Every option of the section's part type, its class's default where the recipe gave none."""
    from ..detect.part_config import part_options

    options = {**registry.options(section.type), **part_options(section, registry)}
    return " ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in options.items() if v is not None)


def format_bytes(count: int) -> str:
    from ..memory import format_bytes as formatted

    return formatted(count)
