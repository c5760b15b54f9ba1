"""Python entry points that the CLI wraps, one per command."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .arch import Arch
from .archio import load_arch
from .costs import arch_costs, costs_by_block
from .errors import UserError
from .resources import resolve_arch_path
from .scores import DEFAULT_STAGE_WEIGHTS, create_scorer
from .scores.madnas import MadnasScore, block_log_std

if TYPE_CHECKING:  # training pulls in torch; `tinynas --help` imports this module and should not wait
    from .deploy.onnx_export import ExportCheck
    from .detect.model_recipe import ModelRecipe
    from .detect.predict import ImageResult
    from .train.recipe import TrainRecipe
    from .train.trainer import TrainResult


def load_any_arch(text: str) -> Arch:
    """An architecture from a file path or a shipped name such as ``damoyolo-s``."""
    return load_arch(resolve_arch_path(text))


def score_arch(arch: Arch, method: str = "madnas", source: str = "", **options) -> tuple[float, list[float]]:
    """The weighted score and the unweighted stage scores of ``arch``.

    ``source`` names the file ``arch`` came from in errors that have no file of their own
    (a forward pass too large for this machine, a wrong number of stage weights).
    """
    try:
        scorer = create_scorer(method, **options)
        stages = scorer.stage_scores(arch)
        return scorer.weighted(arch, stages), stages
    except UserError as err:
        if source and not err.source:
            raise UserError(source, err.field, err.reason) from None
        raise


def arch_report(arch: Arch, resolution: int, weights: Sequence[float] = DEFAULT_STAGE_WEIGHTS) -> dict:
    """Everything ``tinynas info`` prints, as plain data."""
    per_block = costs_by_block(arch, resolution)
    ends = arch.stage_ends()
    scorer = MadnasScore(weights)
    stages = scorer.stage_scores(arch)
    rows = []
    for i, (spec, cost) in enumerate(zip(arch.blocks, per_block)):
        rows.append({
            "index": i, "class": spec.cls, "in": spec.in_channels, "out": spec.out_channels,
            "s": spec.stride, "k": spec.kernel, "L": spec.depth if spec.kind.has_bottleneck else None,
            "btn": spec.bottleneck, "size": cost.out_size, "macs": cost.macs, "params": cost.params,
            "params_fused": cost.params_fused, "layers": cost.layers,
            "stage": ends.index(i) if i in ends else None, "log_std": block_log_std(spec),
        })
    total = arch_costs(arch, resolution)
    return {
        "blocks": rows,
        "total": {"macs": total.macs, "flops": total.flops, "params": total.params,
                  "params_fused": total.params_fused, "layers": total.layers, "size": total.out_size},
        "stage_scores": stages,
        "score": scorer.weighted(arch, stages),
    }


def train_detector(recipe: TrainRecipe, resume: bool = False, stop_after: int | None = None, progress: bool = True,
                   source: str = "<recipe>", callbacks=None) -> TrainResult:
    """Train (or resume) ``recipe`` into its run folder; a recipe whose ``distill.teacher`` names a
    checkpoint distils from that teacher (the term comes from ``tinynas.distill``). ``callbacks``
    maps the trainer's events (``tinynas.train.trainer.EVENTS``) to functions."""
    from .distill.term import check_teacher_classes, distillation_term
    from .train.trainer import train

    if recipe.distill.teacher:
        from .data.coco import CocoDataset

        check_teacher_classes(recipe.distill, CocoDataset(recipe.data.train_annotations, recipe.data.train_images).names)
    return train(recipe, resume=resume, stop_after=stop_after, progress=progress, source=source,
                 extra_loss=distillation_term(recipe.distill), callbacks=callbacks)


def resume_training(run_dir: str | os.PathLike, stop_after: int | None = None, progress: bool = True,
                    teacher: str | None = None) -> TrainResult:
    """Continue the run in ``run_dir`` from its ``last.pt`` with its own ``recipe.yaml``;
    ``teacher`` replaces the teacher checkpoint the run distils from."""
    from .train.run import TrainRun

    run = TrainRun(run_dir)
    recipe = run.recipe()
    if teacher:
        recipe = replace(recipe, distill=replace(recipe.distill, teacher=teacher))
    return train_detector(recipe, resume=True, stop_after=stop_after, progress=progress, source=str(run.recipe_path))


def _onnx_weights(weights: str | os.PathLike) -> bool:
    return str(weights).lower().endswith(".onnx")


def predict_images(weights: str | os.PathLike, source: str | os.PathLike, out_dir: str | os.PathLike,
                   size: int | None = None, conf_threshold: float = 0.25, iou_threshold: float = 0.7,
                   max_detections: int = 100, draw: bool = True, progress: bool = True, force: bool = False,
                   annotations: str | os.PathLike | None = None, batch_size: int = 8,
                   recipe: ModelRecipe | None = None) -> list[ImageResult]:
    """``tinynas predict``: detect with a checkpoint, or with an exported ``.onnx`` file (run by
    onnxruntime as its metadata describes it), on the images of ``source``
    (``detect.predict.predict`` writes the outputs). ``size`` defaults to the size the checkpoint
    was trained at (an old checkpoint without one: 640), an export's to the size it takes;
    ``recipe`` only checks the class count."""
    from .checkpoint import load_detector_checkpoint, resolve_size
    from .detect.predict import predict

    if _onnx_weights(weights):
        from .deploy.onnx_model import OnnxDetector

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
    from .checkpoint import load_detector_checkpoint, resolve_size
    from .deploy.onnx_export import check_export, export_onnx

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


def evaluate_checkpoint(recipe: TrainRecipe, weights: str | os.PathLike, size: int | None = None,
                        source: str = "<recipe>", progress: bool = True) -> dict:
    """``tinynas eval``: COCO metrics of ``weights`` on the recipe's val split, at the size the
    checkpoint was trained at unless ``size`` (an old checkpoint without one: the recipe's
    ``data.size``). The checks training runs come first: a missing val image is one line."""
    from .checkpoint import load_detector_checkpoint, resolve_size
    from .data.check import ensure_trainable, print_warnings, require_boxes
    from .data.coco import CocoDataset
    from .data.pipeline import DetectionDataset
    from .detect.model_recipe import check_input_size
    from .train.class_order import ReorderedClasses, class_order
    from .train.evaluate import evaluate
    from .train.trainer import resolve_model

    print_warnings(ensure_trainable(recipe.data.val_annotations, recipe.data.val_images))
    val = CocoDataset(recipe.data.val_annotations, recipe.data.val_images)
    require_boxes(val, "val")
    recipe = resolve_model(recipe, val.num_classes, source)
    model, ckpt = load_detector_checkpoint(weights, recipe.model)
    names = ckpt.class_names
    if len(names) != val.num_classes:
        raise UserError(str(weights), "class_names", f"{len(names)} classes, the val set has {val.num_classes}")
    run_size = resolve_size(ckpt.size, size, str(weights), default=recipe.data.size)
    check_input_size(model.recipe, run_size, "--size", "")
    order = class_order(names, val.names, str(weights), str(recipe.data.val_annotations))
    if order is not None:  # the same classes, renumbered: scored by name
        model = ReorderedClasses(model, order)
    e = recipe.eval
    return evaluate(model, DetectionDataset(val, run_size), batch_size=e.batch_size, conf_threshold=e.conf,
                    iou_threshold=e.iou, max_detections=e.max_det, progress=progress)


def calibrate_latency_table(table: str | os.PathLike, model: str | None = None, space: str | None = None,
                            size: int | None = None, n: int = 8, seed: int = 0, runs: int = 15, rounds: int = 3,
                            store: bool = True, progress: bool = True) -> dict:
    """``tinynas latency calibrate``: time ``n`` reference detectors here, fit the table's scale
    and overhead to this machine and (with ``store``) keep the fit in its sidecar under this
    machine's name; returns the fit and the error before and after (``latency/machine_fit.py``)."""
    from .latency.machine_fit import calibrate_table
    from .latency.table import resolve_table_path

    return calibrate_table(resolve_table_path(table), model=model, space=space, size=size, n=n, seed=seed,
                           runs=runs, rounds=rounds, store=store, progress=progress)
