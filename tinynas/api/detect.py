"""Commands on a trained detector: ``predict`` and ``export``."""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Sequence

from ..config import setting
from ..errors import UserError
from ..renamed import renamed_keyword

if TYPE_CHECKING:
    from ..deploy.onnx_export import ExportCheck
    from ..detect.model_recipe import ModelRecipe
    from ..detect.predict import ImageResult


def _onnx_weights(weights: str | os.PathLike) -> bool:
    return str(weights).lower().endswith(".onnx")


def predict_images(weights: str | os.PathLike, source: str | os.PathLike, out_dir: str | os.PathLike,
                   size: int | None = None, conf: float = 0.25, iou: float = 0.7, max_det: int = 100,
                   draw: bool = True, progress: bool = True, force: bool = False,
                   annotations: str | os.PathLike | None = None, batch_size: int = 8,
                   recipe: ModelRecipe | str | None = None, **old_names) -> list[ImageResult]:
    """``tinynas predict``: detect with a checkpoint, or with an exported ``.onnx`` file (run by
    onnxruntime as its metadata describes it), on the images of ``source``
    (``detect.predict.predict`` writes the outputs). ``size`` defaults to the size the checkpoint
    was trained at (an old checkpoint without one: 640), an export's to the size it takes;
    ``recipe`` (a model recipe, its file or a shipped name) only checks the class count.
    ``conf``, ``iou``, ``max_det`` were ``conf_threshold``, ``iou_threshold``, ``max_detections``."""
    from ..checkpoint import load_detector_checkpoint, resolve_size
    from ..detect.predict import predict

    conf, iou, max_det = _thresholds("predict_images", old_names, conf, iou, max_det, (0.25, 0.7, 100))

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
    return predict(model, names, source, out_dir, run_size, conf, iou, max_det,
                   draw=draw, progress=progress, force=force, annotations=annotations, category_ids=ids,
                   batch_size=batch_size)


def export_checkpoint(weights: str | os.PathLike, out: str | os.PathLike | None = None, size: int | None = None,
                      nms: bool = False, conf: float = 0.05, iou: float = 0.7, max_det: int = 100,
                      force: bool = False, check: bool = False, check_image: str | os.PathLike | None = None,
                      **old_names) -> tuple[Path, ExportCheck | None]:
    """``tinynas export``: the checkpoint as ONNX (default: its name with ``.onnx``), at the size it
    was trained at unless ``size``; its class names, ids and sizes go into the file's metadata.
    With ``check`` (or a ``check_image``), onnxruntime's outputs are compared with torch's on a
    real-range input (``deploy.onnx_export.check_export``); the comparison is returned, pass or fail."""
    from ..checkpoint import load_detector_checkpoint, resolve_size
    from ..deploy.onnx_export import check_export, export_onnx

    conf, iou, max_det = _thresholds("export_checkpoint", old_names, conf, iou, max_det, (0.05, 0.7, 100))
    model, ckpt = load_detector_checkpoint(weights)
    path = Path(out) if out is not None else Path(weights).with_suffix(".onnx")
    if path.resolve() == Path(weights).resolve():
        raise UserError(str(path), "", "the export would overwrite the checkpoint")
    run_size = resolve_size(ckpt.size, size, str(weights))
    export_onnx(model, path, run_size, nms=nms, conf_threshold=conf, iou_threshold=iou,
                max_detections=max_det, force=force, class_names=ckpt.class_names, trained_size=ckpt.size,
                category_ids=ckpt.category_ids)
    if not (check or check_image is not None):
        return path, None
    return path, check_export(path, model, run_size, nms, conf, iou, max_det,
                              image=check_image)




def _thresholds(function: str, old_names: dict, conf, iou, max_det, defaults) -> tuple:
    """``conf``, ``iou``, ``max_det``, taking their former keywords for one release."""
    conf = renamed_keyword(function, old_names, "conf_threshold", "conf", conf, defaults[0])
    iou = renamed_keyword(function, old_names, "iou_threshold", "iou", iou, defaults[1])
    max_det = renamed_keyword(function, old_names, "max_detections", "max_det", max_det, defaults[2])
    if old_names:
        raise TypeError(f"{function}() got an unexpected keyword argument {next(iter(old_names))!r}")
    return conf, iou, max_det


@dataclass(frozen=True)
class PredictSettings:
    """``tinynas predict``'s settings (each a flag and a ``key=value``)."""

    weights: str = setting(help="tinynas detector checkpoint, or a model exported by `tinynas export` (.onnx)")
    source: str = setting(help="an image or a folder of images")
    out: str = setting(help="output folder")
    recipe: str = setting("", help="check the checkpoint against this model recipe's class count")
    annotations: str = setting("", help="a COCO file of the source folder's images: predict the images it lists and "
                                        "write its image and category ids (so pycocotools scores predictions.json "
                                        "as `eval` does)")
    size: int | None = setting(None, bounds="[1, inf)", unit="pixels",
                               help="letterbox size; default: the size the checkpoint was trained at, else 640 (an "
                                    "export's own)")
    conf: float = setting(0.25, bounds="[0, 1]", help="score threshold")
    iou: float = setting(0.7, bounds="[0, 1]", help="NMS IoU threshold")
    max_det: int = setting(100, bounds="[1, inf)", help="detections kept per image")
    batch_size: int = setting(8, bounds="[1, inf)", help="images per forward pass (eval's eval.batch_size: the same "
                                                         "batches give the same scores)")
    draw: bool = setting(True, help="write the images with their detections drawn, besides the JSON")
    force: bool = setting(False, help="replace output files that already exist")


def predict_with(settings: PredictSettings, progress: bool = True) -> list[ImageResult]:
    """``predict_images`` with the command's settings."""
    s = settings
    return predict_images(s.weights, s.source, s.out, s.size, s.conf, s.iou, s.max_det, draw=s.draw,
                          progress=progress, force=s.force, annotations=s.annotations or None,
                          batch_size=s.batch_size, recipe=s.recipe or None)


@dataclass(frozen=True)
class ExportSettings:
    """``tinynas export``'s settings (each a flag and a ``key=value``)."""

    weights: str = setting(help="tinynas detector checkpoint")
    format: Literal["onnx"] = setting("onnx", help="export format")
    out: str = setting("", help="output file; default: the checkpoint's name with .onnx")
    size: int | None = setting(None, bounds="[1, inf)", unit="pixels",
                               help="square input size; default: the size the checkpoint was trained at, else 640")
    nms: bool = setting(False, help="put multi-class NMS in the graph (output detections [K, 7])")
    conf: float = setting(0.05, bounds="[0, 1]", help="NMS score threshold")
    iou: float = setting(0.7, bounds="[0, 1]", help="NMS IoU threshold")
    max_det: int = setting(100, bounds="[1, inf)", help="NMS boxes kept per class")
    check: bool = setting(False, help="run the export in onnxruntime and compare with torch on a random image in "
                                      "[0, 1]; exit 1 when they differ beyond the tolerance")
    check_image: str = setting("", help="check (as check) on this image, letterboxed as predict prepares it")
    force: bool = setting(False, help="replace the output file if it exists")
    int8: bool = setting(False, help="post-training int8 quantization for onnxruntime (every convolution; QDQ "
                                     "form), calibrated on calib's images; the float model is not kept")
    calib: str = setting("", help="with int8: a folder of calibration images (e.g. the training images)")
    calib_images: int = setting(100, bounds="[1, inf)", help="calibration images drawn from calib (seeded)")
    calib_method: Literal["minmax", "entropy", "percentile"] = setting(
        "minmax", help="how each activation's range is set from the calibration images")
    activations: Literal["uint8", "int8"] = setting(
        "uint8", help="int8 activations' form: uint8 with zero points (onnxruntime's fast path on x86) or int8 "
                      "symmetric (TensorRT's)")
    keep_float: tuple[str, ...] = setting((), help="graph nodes to keep in float32 (by name)")
    keep_float_top: int = setting(0, bounds="[0, inf)", help="also keep the K convolutions int8 hurts most in float32 "
                                                             "(ranked first on the calibration images, as `tinynas "
                                                             "quant sensitivity` ranks them)")
    val_images: str = setting("", help="with int8 and val_annotations: also score the float and int8 files on "
                                       "these images (COCO AP, conf 0.001, IoU 0.7, 100 detections)")
    val_annotations: str = setting("", help="the COCO file of val_images")


def export_with(settings: ExportSettings):
    """``export_checkpoint`` (or, with ``int8``, ``export_int8``) with the command's settings."""
    s = asdict(settings)
    quant = {k: s.pop(k) for k in ("int8", "calib", "calib_images", "calib_method", "activations", "keep_float",
                                   "keep_float_top", "val_images", "val_annotations")}
    if quant.pop("int8"):
        if s["check"] or s["check_image"]:
            raise UserError("--check", "", "an int8 export is checked against the float model on the calibration "
                                           "images, always; drop --check")
        return export_int8(s["weights"], s["out"] or None, s["size"], nms=s["nms"], conf=s["conf"], iou=s["iou"],
                           max_det=s["max_det"], force=s["force"], **quant)
    return export_checkpoint(s.pop("weights"), s.pop("out") or None, s.pop("size"), check_image=s.pop("check_image")
                             or None, **{k: v for k, v in s.items() if k != "format"})


def export_int8(weights: str | os.PathLike, out: str | os.PathLike | None = None, size: int | None = None, *,
                calib: str | os.PathLike, calib_images: int = 100, calib_method: str = "minmax",
                activations: str = "uint8", keep_float: Sequence[str] = (), keep_float_top: int = 0, nms: bool = False,
                conf: float = 0.05, iou: float = 0.7, max_det: int = 100, force: bool = False,
                val_images: str | os.PathLike = "", val_annotations: str | os.PathLike = ""):
    """``tinynas export --int8``: the checkpoint exported, then quantized to int8 for onnxruntime
    (``deploy.quantize``) with ranges from ``calib_images`` images of the folder ``calib``;
    returns the file, what was quantized, and the int8 outputs' distance from the float model's
    on (up to 8 of) those images. ``keep_float_top``: the K most sensitive convolutions
    (``deploy.sensitivity``) stay float, besides the ``keep_float`` nodes."""
    from ..deploy.quantize import compare_float_and_int8, quantize_onnx
    from ..runfolder import check_new_file

    if not calib:
        raise UserError("--calib", "", "required with --int8: a folder of calibration images (e.g. the training "
                                       "images)")
    if bool(val_images) != bool(val_annotations):
        raise UserError("--val-annotations" if val_images else "--val-images", "",
                        "give val_images and val_annotations together (the AP of both files on val)")
    if nms and val_images:
        raise UserError("--val-images", "", "the AP on val is scored without --nms (predict's own NMS at conf 0.001)")
    path = Path(out) if out is not None else Path(weights).with_name(Path(weights).stem + "-int8.onnx")
    check_new_file(path, "--out", force)
    with calibrated_float_export(weights, size, calib, calib_images, nms=nms, conf=conf, iou=iou,
                                 max_det=max_det) as (work, float_path, inputs):
        if keep_float_top:
            from ..deploy.sensitivity import layer_sensitivity

            ranked = layer_sensitivity(float_path, inputs, calib_method, activations)
            keep_float = [*keep_float, *[r.node for r in ranked[:keep_float_top] if r.node not in keep_float]]
        overrides = _trained_ranges(weights, float_path, activations)
        result = quantize_onnx(float_path, path, inputs, calib_method, keep_float, activations,
                               range_overrides=overrides)
        check = compare_float_and_int8(float_path, path, inputs[:8])
        if val_images:
            from dataclasses import replace

            check = replace(check, ap={"float32": _val_ap(float_path, val_images, val_annotations, work / "f"),
                                       "int8": _val_ap(path, val_images, val_annotations, work / "q")})
    return path, result, check


def _trained_ranges(weights, float_path: Path, activations: str) -> dict | None:
    """A quantization-aware checkpoint's observed ranges for its export's tensors; None for any other."""
    from ..checkpoint import load_checkpoint

    ckpt = load_checkpoint(weights)
    if ckpt.qat is None:
        return None
    if ckpt.qat != activations:
        raise UserError("--activations", activations, f"{weights} was trained simulating {ckpt.qat} activations; "
                                                      f"export it with --activations {ckpt.qat}")
    from ..deploy.qat_export import observed_ranges

    return observed_ranges(ckpt.build(), float_path)


@contextlib.contextmanager
def calibrated_float_export(weights: str | os.PathLike, size: int | None, calib: str | os.PathLike,
                            calib_images: int, **export_options):
    """(a temporary folder, the checkpoint's float32 export in it, ``calib_images`` images of the
    folder ``calib`` prepared at the export's size): what quantizing a checkpoint starts from."""
    import tempfile

    from ..checkpoint import load_detector_checkpoint, resolve_size
    from ..deploy.quantize import calibration_images, calibration_inputs

    _, ckpt = load_detector_checkpoint(weights)
    run_size = resolve_size(ckpt.size, size, str(weights))
    inputs = calibration_inputs(calibration_images(calib, calib_images), run_size)
    with tempfile.TemporaryDirectory() as work:
        float_path, _ = export_checkpoint(weights, Path(work) / "float32.onnx", run_size, **export_options)
        yield Path(work), float_path, inputs


def _val_ap(model: Path, images, annotations, out: Path) -> float:
    """COCO AP of an exported file on val, as the benchmarks score (conf 0.001, IoU 0.7, 100)."""
    import json

    from ..train.coco_eval import coco_metrics

    predict_images(model, images, out, conf=0.001, iou=0.7, max_det=100, draw=False, progress=False,
                   annotations=annotations)
    return coco_metrics(annotations, json.loads(predictions_file(out).read_text()))["AP"]


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


@dataclass(frozen=True)
class ModelInfoSettings:
    """``tinynas model info``'s settings besides the RECIPE it describes."""

    size: int = setting(640, bounds="[1, inf)", unit="pixels", help="square input size")
    unfused: bool = setting(False, help="count the training form (RepConv branches, BatchNorms) instead of the "
                                        "deploy form")


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
