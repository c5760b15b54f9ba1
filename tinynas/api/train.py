"""Training commands: ``train`` (fresh or resumed), ``eval`` and ``distill-chain``."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..errors import UserError

if TYPE_CHECKING:  # training pulls in torch; `tinynas --help` imports this package and should not wait
    from ..train.recipe import TrainRecipe
    from ..train.trainer import TrainResult


def train_detector(recipe: TrainRecipe, resume: bool = False, stop_after: int | None = None, progress: bool = True,
                   source: str = "<recipe>", callbacks=None) -> TrainResult:
    """Train (or resume) ``recipe`` into its run folder; a recipe whose ``distill.teacher`` names a
    checkpoint distils from that teacher (the term comes from ``tinynas.distill``). ``callbacks``
    maps the trainer's events (``tinynas.train.trainer.EVENTS``) to functions."""
    from ..distill.term import check_teacher_classes, distillation_term
    from ..train.trainer import train

    if recipe.distill.teacher:
        from ..data.coco import CocoDataset

        check_teacher_classes(recipe.distill, CocoDataset(recipe.data.train_annotations, recipe.data.train_images).names)
    return train(recipe, resume=resume, stop_after=stop_after, progress=progress, source=source,
                 extra_loss=distillation_term(recipe.distill), callbacks=callbacks)


def resume_training(run_dir: str | os.PathLike, stop_after: int | None = None, progress: bool = True,
                    teacher: str | None = None) -> TrainResult:
    """Continue the run in ``run_dir`` from its ``last.pt`` with its own ``recipe.yaml``;
    ``teacher`` replaces the teacher checkpoint the run distils from."""
    from ..train.run import TrainRun

    run = TrainRun(run_dir)
    recipe = run.recipe()
    if teacher:
        recipe = replace(recipe, distill=replace(recipe.distill, teacher=teacher))
    return train_detector(recipe, resume=True, stop_after=stop_after, progress=progress, source=str(run.recipe_path))


def evaluate_checkpoint(recipe: TrainRecipe, weights: str | os.PathLike, size: int | None = None,
                        source: str = "<recipe>", progress: bool = True) -> dict:
    """``tinynas eval``: COCO metrics of ``weights`` on the recipe's val split, at the size the
    checkpoint was trained at unless ``size`` (an old checkpoint without one: the recipe's
    ``data.size``). The checks training runs come first: a missing val image is one line."""
    from ..checkpoint import load_detector_checkpoint, resolve_size
    from ..data.check import ensure_trainable, print_warnings, require_boxes
    from ..data.coco import CocoDataset
    from ..data.pipeline import DetectionDataset
    from ..detect.model_recipe import check_input_size
    from ..train.class_order import ReorderedClasses, class_order
    from ..train.evaluate import evaluate
    from ..train.trainer import resolve_model

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




def load_train_recipe(path: str | os.PathLike, overrides=None) -> tuple[TrainRecipe, str]:
    """A training recipe from a file or a run folder (its ``recipe.yaml``), with ``key=value``
    overrides applied; returns it with the file it came from, for error messages."""
    from ..train.recipe import load_train_recipe as load

    path = Path(path)
    if path.is_dir():
        path = path / "recipe.yaml"
    return load(path, overrides), str(path)


def is_training_run(path: str | os.PathLike) -> bool:
    """True when ``path`` is a run folder that ``--resume`` can continue (it holds its recipe)."""
    from ..train.run import TrainRun

    return TrainRun(path).started()


def run_distill_chain(chain_file: str | os.PathLike, overrides: Sequence[str] = (),
                      progress: bool = True) -> tuple[list[dict], str, Path]:
    """``tinynas distill-chain``: run (or finish) every stage of the chain file, with ``overrides``
    (``["common.train.epochs=3"]``) set on it; returns the rows, their markdown table and the
    chain's folder (where summary.md and summary.csv went)."""
    from ..config import COMMAND_LINE, Overrides
    from ..distill.chain import format_markdown, load_chain, run_chain

    chain = load_chain(chain_file, Overrides.parse(list(overrides), COMMAND_LINE))
    rows = run_chain(chain, progress=progress)
    return rows, format_markdown(rows), chain.out
