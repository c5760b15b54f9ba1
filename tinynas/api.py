"""Python entry points that the CLI wraps, one per command."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING, Sequence

from .arch import Arch
from .archio import load_arch
from .costs import arch_costs, costs_by_block
from .errors import UserError
from .resources import resolve_arch_path
from .scores import DEFAULT_STAGE_WEIGHTS, create_scorer
from .scores.madnas import MadnasScore, block_log_std

if TYPE_CHECKING:  # training pulls in torch; `tinynas --help` imports this module and should not wait
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
                   source: str = "<recipe>") -> TrainResult:
    """Train (or resume) ``recipe`` into its run folder; a recipe whose ``distill.teacher`` names a
    checkpoint distils from that teacher (the term comes from ``tinynas.distill``)."""
    from .distill.term import check_teacher_classes, distillation_term
    from .train.trainer import train

    if recipe.distill.teacher:
        from .data.coco import CocoDataset

        check_teacher_classes(recipe.distill, CocoDataset(recipe.data.train_annotations, recipe.data.train_images).names)
    return train(recipe, resume=resume, stop_after=stop_after, progress=progress, source=source,
                 extra_loss=distillation_term(recipe.distill))


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
