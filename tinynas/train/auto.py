"""Training settings left ``auto`` in a recipe, chosen from the run's length, batch and data.

A stock recipe (DAMO-YOLO's: SGD at 0.01 per 64 images, 5 warm-up epochs, EMA 0.9998, 16 final
epochs without mosaic) is tuned for 300 epochs of COCO, ~550,000 optimiser steps. A user with
forty images and a hundred epochs runs ~300 steps: that lr barely moves a fresh network, the EMA
averages over ~5,000 steps and so returns a model from mid-training, and 16 quiet epochs are a
sixth of the run. The rules below are those stock trainers apply to short runs (ultralytics'
``optimizer=auto``, iteration-counted warm-up with a floor and bias warm-up), plus an EMA and a
quiet tail in proportion to the run. A value a recipe states is never changed, so the COCO
recipes, which state every one, keep DAMO-YOLO's exact values.

``resolve_auto`` returns the recipe with every ``auto`` replaced by a number (that is what the
run folder's ``recipe.yaml`` records, so a resumed run needs no rule) and the list of choices,
each with its reason, for printing once.
"""

from __future__ import annotations

import math
from dataclasses import replace

from .recipe import AUTO, TrainRecipe

# Above this many optimiser steps at 64 images each, a run is "long" and gets SGD (ultralytics'
# threshold for the same choice); DAMO-YOLO's COCO runs have ~550,000.
LONG_RUN_STEPS_AT_64 = 10_000
SGD_LR_PER_64 = 0.01  # DAMO-YOLO's
# AdamW's lr for short runs, lowered as classes are added: 0.002 * 5 / (4 + classes) (ultralytics'
# fit); AdamW steps do not grow with the batch the way SGD's do, so it is set per step, not per 64.
ADAMW_LR_BASE = 0.002
WARMUP_EPOCHS = 3.0
WARMUP_MIN_ITERS = 100  # a short run still warms up over a useful number of steps ...
WARMUP_MAX_SHARE = 1 / 3  # ... but never for more than a third of it
BIAS_WARMUP_LR = 0.1  # biases start high and fall to the lr during warm-up (YOLOv5/v8)
EMA_HORIZON_SHARE = 0.1  # the EMA averages over ~a tenth of the run ...
EMA_MAX_DECAY = 0.9998  # ... never slower than DAMO-YOLO's
EMA_RAMP_SHARE = 0.4  # DAMO-YOLO's ramp / horizon: 2000 / 5000


def resolve_auto(recipe: TrainRecipe, train_images: int, iters_per_epoch: int,
                 batch_size: int) -> tuple[TrainRecipe, list[tuple[str, object, str]]]:
    """Fill every ``auto`` of ``recipe.train`` and ``recipe.augment``; return it and the choices."""
    cfg, aug = recipe.train, recipe.augment
    total_iters = cfg.epochs * iters_per_epoch
    classes = recipe.model.head.num_classes
    chosen: list[tuple[str, object, str]] = []
    steps_at_64 = cfg.epochs * train_images / 64.0

    optimizer = cfg.optimizer
    if optimizer == AUTO and cfg.lr_per_64 != AUTO:
        # A stated lr_per_64 is a rate for SGD's linear-scaling rule (every recipe before AdamW was
        # offered states SGD rates); AdamW at that rate would diverge.
        optimizer = "sgd"
        chosen.append(("train.optimizer", optimizer, "the recipe states lr_per_64, an SGD rate"))
    elif optimizer == AUTO:
        optimizer = "sgd" if steps_at_64 > LONG_RUN_STEPS_AT_64 else "adamw"
        chosen.append(("train.optimizer", optimizer, f"{steps_at_64:,.0f} steps at 64 images "
                       f"({'more' if optimizer == 'sgd' else 'no more'} than {LONG_RUN_STEPS_AT_64:,})"))
    lr_per_64 = cfg.lr_per_64
    if lr_per_64 == AUTO:
        if optimizer == "sgd":
            lr_per_64, why = SGD_LR_PER_64, "SGD's linear-scaling value"
        else:
            lr = round(ADAMW_LR_BASE * 5 / (4 + classes), 6)
            lr_per_64, why = lr * 64.0 / batch_size, f"lr {lr:g} per step for {classes} classes"
        chosen.append(("train.lr_per_64", _round(lr_per_64), why))
    warmup_epochs = cfg.warmup_epochs
    if warmup_epochs == AUTO:
        iters = max(round(WARMUP_EPOCHS * iters_per_epoch), WARMUP_MIN_ITERS)
        iters = min(iters, int(total_iters * WARMUP_MAX_SHARE))
        warmup_epochs = iters / iters_per_epoch
        chosen.append(("train.warmup_epochs", _round(warmup_epochs), f"{iters} iterations"))
    bias_lr = cfg.warmup_bias_lr
    if bias_lr == AUTO:
        bias_lr = BIAS_WARMUP_LR
        chosen.append(("train.warmup_bias_lr", bias_lr, "biases fall from it to the lr over the warm-up"))
    ema_decay, ema_ramp = cfg.ema_decay, cfg.ema_ramp
    horizon = max(EMA_HORIZON_SHARE * total_iters, 1.0)
    if ema_decay == AUTO:
        ema_decay = min(EMA_MAX_DECAY, horizon / (horizon + 1.0))
        chosen.append(("train.ema_decay", _round(ema_decay), f"averages over ~{ema_decay / (1 - ema_decay):.0f} "
                       f"of {total_iters} iterations"))
    if ema_ramp == AUTO:
        lag = ema_decay / max(1.0 - ema_decay, 1e-12)
        ema_ramp = max(1.0, EMA_RAMP_SHARE * lag)
        chosen.append(("train.ema_ramp", _round(ema_ramp), "0.4 x the EMA's horizon, as DAMO-YOLO's"))
    no_aug = aug.no_aug_epochs
    if no_aug == AUTO:
        no_aug = aug.quiet_epochs(cfg.epochs)
        chosen.append(("augment.no_aug_epochs", no_aug, f"the last tenth of {cfg.epochs} epochs"))

    train = replace(cfg, optimizer=optimizer, lr_per_64=_round(float(lr_per_64)),
                    warmup_epochs=_round(float(warmup_epochs)), warmup_bias_lr=float(bias_lr),
                    ema_decay=_round(float(ema_decay)), ema_ramp=_round(float(ema_ramp)))
    return replace(recipe, train=train, augment=replace(aug, no_aug_epochs=int(no_aug))), chosen


def _round(value: float) -> float:
    """Six significant digits: what is printed and stored is what the run uses."""
    return float(f"{value:.6g}") if value and math.isfinite(value) else value


def format_choices(chosen: list[tuple[str, object, str]]) -> str:
    return "auto: " + "; ".join(f"{key} {value} ({why})" for key, value, why in chosen)
