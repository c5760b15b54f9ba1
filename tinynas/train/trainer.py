"""The training loop: data -> detector -> detection loss (+ an extra term) -> SGD, EMA.

The detection loss is assembled from the recipe's ``train.assigner``, ``cls_loss``, ``box_loss``
and ``dfl`` (``composed_loss.py``); by default DAMO-YOLO's AlignOTA + QFL + GIoU + DFL.

One call of ``train`` runs (or resumes) a run folder ``runs/<name>/``. It writes atomically,
after every epoch, a row of ``metrics.csv`` and ``best.pt`` when the val AP improves; and
``last.pt`` (EMA weights for use, plus the raw model, optimiser, EMA, epoch and RNG state for
resuming) and the loss/mAP plot after the first and last epoch and at least every
``RESUME_SAVE_SECONDS``. Resuming from ``last.pt`` at an epoch boundary gives
the same weights as an uninterrupted run: the lr follows the global iteration, the data
order and augmentations depend only on (seed, epoch, index), and the torch RNG is restored.

An extra loss term (``extra_loss.py``; distillation is one, built by ``tinynas.distill``) is
handed in by the caller; the trainer knows only its protocol.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from ..checkpoint import load_checkpoint, load_detector_checkpoint, save_checkpoint
from ..data.cache import cache_datasets
from ..data.check import ensure_trainable, print_warnings, require_boxes
from ..data.coco import CocoDataset
from ..data.collate import make_loader, set_loader_epoch
from ..data.pipeline import DetectionDataset
from ..detect.anchors import anchor_points
from ..detect.detector import Detector
from ..detect.input_layout import to_training_input
from ..errors import UserError
from ..detect.footprint import check_detector_fits
from ..runfolder import owned_folder
from .ema import ModelEMA
from .evaluate import evaluate
from .composed_loss import ComposedDetectionLoss
from .auto import format_choices, resolve_auto
from .extra_loss import ExtraLoss, StepContext
from .optim import build_optimizer
from .recipe import TrainRecipe
from .run import TrainRun
from .run_files import MetricsLog, plot_metrics, write_recipe
from .schedule import bias_learning_rate, learning_rate, scaled_lr


# On a small dataset an epoch takes seconds, and writing the resumable checkpoint (model, EMA,
# optimiser: ~60 MB with AdamW for a YOLOv8n-sized model, fsynced) and redrawing the plot every
# epoch cost a tenth of the run. They are written after the first and the last epoch of a call
# and whenever this long has passed, so a crash loses at most this much work.
RESUME_SAVE_SECONDS = 30.0


@dataclass
class TrainResult:
    run_dir: Path
    epochs_done: int
    best_ap: float
    last_metrics: dict
    main_process: bool = True


def _resolve_device(name: str, local_rank: int, source: str = "") -> torch.device:
    """The recipe has spelled ``name`` (auto, cpu, cuda, cuda:N); here it meets this machine."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(source, "train.device", f"{name} requested but CUDA is not available on this machine "
                        "(set train.device=cpu or auto)")
    if name == "cuda":
        name = f"cuda:{local_rank}"
    if name.startswith("cuda:") and int(name.partition(":")[2]) >= torch.cuda.device_count():
        raise UserError(source, "train.device", f"{name} requested but this machine has "
                        f"{torch.cuda.device_count()} CUDA device(s) (cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    return torch.device(name)


def _distributed() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world


def _set_bn(model: nn.Module, eps: float, momentum: float) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eps, m.momentum = eps, momentum


def _datasets(recipe: TrainRecipe, source: str) -> tuple[CocoDataset, CocoDataset]:
    d = recipe.data
    sets = dict.fromkeys((str(ann), str(images)) for ann, images in  # the val set may be the train set
                         ((d.train_annotations, d.train_images), (d.val_annotations, d.val_images)))
    warnings = [problem for ann, images in sets for problem in ensure_trainable(ann, images)]
    print_warnings(warnings)  # before any training time is spent, where a user looks first
    train_coco, val_coco = CocoDataset(d.train_annotations, d.train_images), CocoDataset(d.val_annotations, d.val_images)
    if train_coco.category_ids != val_coco.category_ids:
        raise UserError(d.val_annotations, "categories", "val categories differ from the training set's")
    require_boxes(train_coco, "train")
    require_boxes(val_coco, "val")
    return train_coco, val_coco


def resolve_model(recipe: TrainRecipe, num_classes: int, source: str) -> TrainRecipe:
    """A referenced model takes the dataset's class count; an inline one must already match it."""
    if recipe.model.head.num_classes == num_classes:
        return recipe
    if recipe.model_from_reference:
        return replace(recipe, model=recipe.model.with_num_classes(num_classes))
    raise UserError(source, "head.num_classes", f"the recipe says {recipe.model.head.num_classes} classes, "
                    f"the dataset has {num_classes}")


class _TrainStep(nn.Module):
    """What DistributedDataParallel wraps: the student and the extra term's modules, so both get
    synchronised gradients; a term with modules is computed inside this forward, where DDP sees
    them used."""

    def __init__(self, detector: Detector, extra_loss: ExtraLoss | None, extra_modules: nn.Module | None,
                 total_iters: int, no_aug_from: int):
        super().__init__()
        self.detector = detector
        self.extra_modules = extra_modules
        self.extra_loss = extra_loss
        self.total_iters, self.no_aug_from = total_iters, no_aug_from
        # The last forward's tensors as the head and the term consumed them: DDP hands back copies
        # of what forward returns, and no loss's gradient passes through those copies' features.
        self.step: StepContext | None = None

    def forward(self, images: torch.Tensor, iteration: int):
        feats = self.detector.features(images)
        cls_logits, reg_logits = self.detector.head(feats)
        self.step = StepContext(iteration, self.total_iters, self.no_aug_from, images, tuple(feats),
                                cls_logits, reg_logits)
        extra = self.extra_loss.loss(self.step) if self.extra_modules is not None else None
        return feats, cls_logits, reg_logits, extra


def train(recipe: TrainRecipe, resume: bool = False, stop_after: int | None = None, progress: bool = True,
          source: str = "<recipe>", extra_loss: ExtraLoss | None = None) -> TrainResult:
    """Train (or resume) ``recipe``; ``stop_after`` ends this call after that many more epochs.

    ``extra_loss`` is added to the detection loss (see ``extra_loss.py``). A recipe that names a
    teacher needs the distillation term: ``tinynas.api.train_detector`` builds it, or
    ``tinynas.distill.distillation_term(recipe.distill)`` for a caller of this function.
    """
    if recipe.distill.teacher and extra_loss is None:
        raise ValueError(f"the recipe names a teacher ({recipe.distill.teacher}) but no distillation term was "
                         "given: pass extra_loss=tinynas.distill.distillation_term(recipe.distill)")
    rank, local_rank, world = _distributed()
    own_group = world > 1 and not dist.is_initialized()
    if own_group:
        dist.init_process_group("nccl" if torch.cuda.is_available() and recipe.train.device != "cpu" else "gloo")
    try:
        if rank != 0:
            return _train(recipe, resume, stop_after, progress, source, extra_loss, rank, local_rank, world)
        with owned_folder(recipe.run_dir):  # one writer per run folder; other ranks write nothing
            return _train(recipe, resume, stop_after, progress, source, extra_loss, rank, local_rank, world)
    finally:
        if own_group:
            dist.destroy_process_group()


def _train(recipe: TrainRecipe, resume: bool, stop_after: int | None, progress: bool, source: str,
           extra_loss: ExtraLoss | None, rank: int, local_rank: int, world: int) -> TrainResult:
    device = _resolve_device(recipe.train.device, local_rank, source)
    main_process = rank == 0
    run_dir = recipe.run_dir
    run = TrainRun(run_dir)
    last_path = run.last_path
    if resume and not last_path.is_file():
        raise UserError(str(run_dir), "last.pt", "nothing to resume: the run stopped before its first epoch "
                        f"ended (no checkpoint); start it again with: tinynas train {run.recipe_path} out={run_dir}")
    if not resume and last_path.exists():
        raise UserError(str(run_dir), "", "this run folder already holds a run; resume it with --resume "
                        "or choose another name")

    train_coco, val_coco = _datasets(recipe, source)
    recipe = resolve_model(recipe, train_coco.num_classes, source)
    cfg = recipe.train
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)

    amp = cfg.amp and device.type == "cuda"
    per_rank_batch = max(1, cfg.batch_size // world)
    # Before anything is allocated: a batch or size beyond this device is one line, not an OOM.
    check_detector_fits(recipe.model, recipe.data.size, per_rank_batch, training=True, amp=amp, device=device,
                        source=source, field="train.batch_size")
    model = Detector(recipe.model)
    _set_bn(model, cfg.bn_eps, cfg.bn_momentum)
    model.to(device)
    # Here, before anything else draws from the torch RNG, so that a term's initial weights are
    # the same in every run of this recipe.
    extra_modules = extra_loss.attach(model, device, amp) if extra_loss is not None else None

    train_set = DetectionDataset(train_coco, recipe.data.size, train=True, augment=recipe.augment, seed=cfg.seed,
                                 epochs=cfg.epochs)
    val_set = DetectionDataset(val_coco, recipe.data.size, train=False)
    # Before the loader's workers start, so that they share the cached pixels.
    cache_datasets(recipe.data.cache, [train_coco, val_coco], recipe.data.size,
                   processes=int(os.environ.get("LOCAL_WORLD_SIZE", world)), progress=progress and main_process)
    # Every image every epoch: a last partial batch is kept (a single leftover image joins the
    # batch before it), and EpochSampler pads the ranks to equal lengths for DDP.
    loader = make_loader(train_set, per_rank_batch, shuffle=True, seed=cfg.seed, workers=recipe.data.workers,
                         rank=rank, world_size=world)
    iters_per_epoch = max(1, len(loader))
    recipe, chosen = resolve_auto(recipe, len(train_set), iters_per_epoch, per_rank_batch * world)
    cfg = recipe.train
    train_set.augment = recipe.augment  # before the first batch starts the (persistent) workers
    total_iters = cfg.epochs * iters_per_epoch
    warmup_iters = int(round(cfg.warmup_epochs * iters_per_epoch))
    no_aug_from = (cfg.epochs - recipe.augment.no_aug_epochs) * iters_per_epoch
    base_lr = scaled_lr(cfg.lr_per_64, per_rank_batch * world)
    if main_process and chosen:  # once, even under --quiet: these values decide the run
        tqdm.write(f"{source}: {format_choices(chosen)}", file=sys.stderr)
    if main_process and progress:
        _warn_slow_ema(cfg.ema_decay, total_iters, source)

    step_module = _TrainStep(model, extra_loss, extra_modules, total_iters, no_aug_from)
    optimizer = build_optimizer(step_module, cfg.optimizer, base_lr, cfg.momentum, cfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    train_step: nn.Module = step_module
    if world > 1:
        if device.type == "cuda":  # SyncBatchNorm has no CPU kernels; CPU ranks keep per-rank BN
            step_module = nn.SyncBatchNorm.convert_sync_batchnorm(step_module)
        train_step = nn.parallel.DistributedDataParallel(
            step_module, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=extra_loss is not None)  # a term may skip iterations
    ema = ModelEMA(model, cfg.ema_decay, cfg.ema_ramp)
    loss_fn = ComposedDetectionLoss(model.num_classes, model.head.reg_max, cfg.loss_options(model.head.reg_max))
    log = MetricsLog(run.metrics_path)

    start_epoch, best_ap, best_epoch = 0, -1.0, 0
    if resume:
        start_epoch, best_ap = _restore(last_path, model, ema, optimizer, scaler, extra_loss)
        if main_process:
            best_epoch = _match_last(run, log, start_epoch, best_ap, ema.module, train_coco.names,
                                     train_coco.category_ids, recipe.data.size)
    elif main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_recipe(run.recipe_path, recipe)
        log.reset()
        # A run killed in its first epoch may have left these before any last.pt: it starts over.
        run.best_path.unlink(missing_ok=True)
        run.plot_path.unlink(missing_ok=True)

    end_epoch = cfg.epochs if stop_after is None else min(cfg.epochs, start_epoch + stop_after)
    last_metrics: dict = {}
    last_saved = last_plotted = time.monotonic()
    for epoch in range(start_epoch, end_epoch):
        set_loader_epoch(loader, epoch)
        train_step.train()
        sums: dict[str, float] = {}
        started = time.time()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (progress and main_process),
                   leave=False, dynamic_ncols=True)
        for step, (images, targets) in enumerate(bar):
            it = epoch * iters_per_epoch + step
            lr = learning_rate(it, total_iters, base_lr, warmup_iters, cfg.min_lr_ratio)
            bias_lr = bias_learning_rate(it, lr, warmup_iters, cfg.warmup_bias_lr)
            for group in optimizer.param_groups:
                group["lr"] = bias_lr if group.get("kind") == "bias" else lr
            images = to_training_input(images, device, non_blocking=True)
            targets = [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]
            with torch.autocast(device.type, enabled=amp):
                feats, cls_logits, reg_logits, extra = train_step(images, it)
            if not (torch.isfinite(cls_logits).all() and torch.isfinite(reg_logits).all()):
                raise _diverged(run_dir, epoch, step, last_path)
            points, strides = anchor_points([f.shape[-2:] for f in feats], model.head.strides,
                                            dtype=torch.float32, device=device)
            losses = loss_fn(cls_logits.float(), reg_logits.float(), points, strides, targets)
            loss = losses["loss"]
            step_context = step_module.step
            if extra_loss is not None and extra_modules is None:
                # A term without modules comes after the detection loss and sees the head outputs
                # that loss used (under DDP, the forward's copies).
                step_context = replace(step_context, cls_logits=cls_logits, reg_logits=reg_logits)
                extra = extra_loss.loss(step_context)
            weight = 0.0
            if extra is not None:
                weight = extra_loss.weight(step_context, extra, loss,
                                           scaler.get_scale() if scaler.is_enabled() else 1.0)
                losses[extra_loss.name] = extra.detach()
                loss = loss + weight * extra
            if not torch.isfinite(loss):
                raise _diverged(run_dir, epoch, step, last_path)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(step_module.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            ema.update(model)
            for key, value in losses.items():
                if key != "num_pos":
                    sums[key] = sums.get(key, 0.0) + float(value.detach())
            if extra_loss is not None:  # the effective weight, logged as the epoch's mean
                key = f"{extra_loss.name}_weight"
                sums[key] = sums.get(key, 0.0) + weight
            bar.set_postfix({k: f"{v / (step + 1):.3f}" for k, v in sums.items()}, lr=f"{lr:.2e}")
        bar.close()
        epoch_losses = {k: v / iters_per_epoch for k, v in sums.items()}
        metrics: dict = {}
        done = epoch + 1
        if main_process and (done % cfg.eval_interval == 0 or done == cfg.epochs):
            metrics = evaluate(ema.module, val_set, batch_size=recipe.eval.batch_size,
                               conf_threshold=recipe.eval.conf_threshold, iou_threshold=recipe.eval.iou_threshold,
                               max_detections=recipe.eval.max_detections, device=device, progress=progress)
        if main_process:
            ap = metrics.get("AP", float("nan"))
            improved = not math.isnan(ap) and ap > best_ap
            best_ap = max(best_ap, ap) if not math.isnan(ap) else best_ap
            final = done == end_epoch
            # last.pt, the resume point, is the epoch's last durable write: a kill before it resumes
            # from the previous one and redoes this epoch identically, so best.pt, the row and the
            # plot are never skipped.
            if improved:
                best_epoch = done
                save_checkpoint(run.best_path, ema.module, train_coco.names, extra={"epoch": done, "AP": ap},
                                category_ids=train_coco.category_ids, size=recipe.data.size)
            row = {"epoch": done, "lr": lr, **epoch_losses,
                   **{k: v for k, v in metrics.items() if isinstance(v, float)}, "seconds": time.time() - started}
            log.append(row)
            if final or time.monotonic() - last_plotted >= RESUME_SAVE_SECONDS:
                plot_metrics(run.metrics_path, run.plot_path)
                last_plotted = time.monotonic()
            if final or done == start_epoch + 1 or time.monotonic() - last_saved >= RESUME_SAVE_SECONDS:
                state = _resume_state(done, best_ap, best_epoch, model, ema, optimizer, scaler, extra_loss)
                save_checkpoint(last_path, ema.module, train_coco.names, extra=state, category_ids=train_coco.category_ids, size=recipe.data.size)
                last_saved = time.monotonic()
            last_metrics = row
            if progress:
                shown = ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k not in ("epoch", "seconds"))
                tqdm.write(f"epoch {done}/{cfg.epochs}: {shown}")
    return TrainResult(run_dir, end_epoch, best_ap, last_metrics, main_process)


def _warn_slow_ema(decay: float, total_iters: int, source: str) -> None:
    """The saved weights are the EMA's: on a short run a DAMO-YOLO decay leaves them far behind
    the model (at 0.9998 the EMA's mean age is ~5000 iterations), which looks like bad training."""
    lag = decay / max(1.0 - decay, 1e-12)
    if total_iters >= 100 and lag > total_iters / 3:  # smoke runs of a few steps are not worth it
        tqdm.write(f"{source}: warning: train.ema_decay {decay:g} averages weights over ~{lag:.0f} iterations "
                   f"but this run has {total_iters}; the saved (EMA) weights will lag the model "
                   f"(a decay near {1 - 10 / max(total_iters, 10):.3g} suits this run)", file=sys.stderr)


def _diverged(run_dir: Path, epoch: int, step: int, last_path: Path) -> UserError:
    where = f"the last good checkpoint is {last_path}" if last_path.is_file() else "no checkpoint was written"
    return UserError(str(run_dir), "loss", f"non-finite loss at epoch {epoch + 1}, iteration {step + 1}; "
                     f"training stopped, {where} (lower train.lr_per_64 or set train.grad_clip)")


# The trainer's own entries in last.pt's extra; an extra loss term's entries sit beside them.
_RESUME_KEYS = ("epoch", "best_ap", "best_epoch", "model", "ema_updates", "optimizer", "scaler", "torch_rng",
                "python_rng")


def _resume_state(epoch: int, best_ap: float, best_epoch: int, model: nn.Module, ema: ModelEMA, optimizer, scaler,
                  extra_loss: ExtraLoss | None) -> dict:
    state = {
        "epoch": epoch, "best_ap": best_ap, "best_epoch": best_epoch, "model": model.state_dict(),
        "ema_updates": ema.updates,
        "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
        "torch_rng": torch.get_rng_state(), "python_rng": list(random.getstate()[1]),
    }
    if extra_loss is not None:
        own = extra_loss.state_dict()
        clash = sorted(set(own) & set(_RESUME_KEYS))
        if clash:
            raise ValueError(f"the extra loss term {extra_loss.name!r} saves {clash}, which the trainer uses")
        state.update(own)
    return state


def _match_last(run: TrainRun, log: MetricsLog, epoch: int, best_ap: float, ema_module: nn.Module,
                names: list[str], category_ids: list[int], size: int | None) -> int:
    """Make the run's files agree with ``last.pt`` (epoch ``epoch`` done); the best epoch.

    Rows past that epoch came from epochs the resume redoes identically: they go. A best.pt
    that does not hold ``best_ap`` was lost in a kill between it and last.pt (tinynas before
    last.pt came last wrote them the other way round); it is rebuilt from last.pt's EMA
    weights when the best epoch is last.pt's own, and refused otherwise, never skipped.
    """
    log.keep_epochs(epoch)
    extra = load_checkpoint(run.last_path).extra
    best_epoch = int(extra.get("best_epoch", epoch))  # without one: the old order's window, at this epoch
    if best_ap >= 0 and _best_ap(run.best_path) != best_ap:
        if best_epoch != epoch:
            raise UserError(str(run.best_path), "", f"missing or not the best weights (last.pt records AP "
                            f"{best_ap:.4g} at epoch {best_epoch}); restore it, or start the run again")
        save_checkpoint(run.best_path, ema_module, names, extra={"epoch": epoch, "AP": best_ap},
                        category_ids=category_ids, size=size)
    if not run.plot_path.is_file():
        plot_metrics(run.metrics_path, run.plot_path)
    return best_epoch


def settle_finished_run(run: TrainRun) -> None:
    """Make a finished run's files agree with its ``last.pt``, as a resume does before its first
    epoch: a chain that skips a stage trained earlier (perhaps by a tinynas that wrote best.pt
    after last.pt) must not distil from, or report, weights a kill left behind."""
    detector, ckpt = load_detector_checkpoint(run.last_path)
    extra = ckpt.extra
    _match_last(run, MetricsLog(run.metrics_path), int(extra.get("epoch", 0)), float(extra.get("best_ap", -1.0)),
                detector, ckpt.class_names, ckpt.category_ids, ckpt.size)


def _best_ap(path: Path) -> float | None:
    try:
        return float(load_checkpoint(path).extra.get("AP"))
    except (UserError, TypeError, ValueError):
        return None


def _restore(path: Path, model: nn.Module, ema: ModelEMA, optimizer, scaler,
             extra_loss: ExtraLoss | None) -> tuple[int, float]:
    ckpt = load_checkpoint(path)
    extra = ckpt.extra
    for key in ("epoch", "model", "optimizer", "ema_updates"):
        if key not in extra:
            raise UserError(str(path), f"extra.{key}", "missing: not a resumable training checkpoint")
    difference = _model_difference(ckpt.recipe.to_dict(), model.recipe.to_dict())
    if difference is not None:
        raise UserError(str(path), "recipe", f"written by another model than the run's recipe.yaml describes "
                        f"({difference}): restore that recipe.yaml, or start a new run")
    try:
        model.load_state_dict(extra["model"])
        ema.module.load_state_dict(ckpt.state_dict)
    except RuntimeError as err:  # same recipe, other tensors: the file was edited or written elsewhere
        first = str(err).strip().splitlines()[-1].strip()
        raise UserError(str(path), "state_dict", f"the weights do not fit the run's model ({first[:200]})") from None
    ema.updates = int(extra["ema_updates"])
    saved_groups = len(extra["optimizer"].get("param_groups", []))
    if saved_groups != len(optimizer.param_groups):
        raise UserError(str(path), "extra.optimizer", f"{saved_groups} parameter groups, this version trains "
                        f"with {len(optimizer.param_groups)}: the run was started by an older tinynas")
    optimizer.load_state_dict(extra["optimizer"])
    if "scaler" in extra:
        scaler.load_state_dict(extra["scaler"])
    if extra_loss is not None:
        extra_loss.load_state_dict({k: v for k, v in extra.items() if k not in _RESUME_KEYS})
    torch.set_rng_state(extra["torch_rng"])
    random.setstate((3, tuple(int(v) for v in extra["python_rng"]), None))
    return int(extra["epoch"]), float(extra.get("best_ap", -1.0))


def _model_difference(stored: object, current: object, where: str = "") -> str | None:
    """The first setting in which two model recipes (as dicts) differ, in words; ``None`` when
    they describe the same model (its name aside: the name does not shape a weight)."""
    if isinstance(stored, dict) and isinstance(current, dict):
        for key in [*stored, *(k for k in current if k not in stored)]:
            if not where and key == "name":
                continue
            found = _model_difference(stored.get(key), current.get(key), f"{where}.{key}" if where else str(key))
            if found is not None:
                return found
        return None
    if stored == current:
        return None
    if isinstance(stored, list) and isinstance(current, list):
        if len(stored) != len(current):
            return f"{where}: {len(stored)} entries in the checkpoint, {len(current)} in recipe.yaml"
        return next((found for i, (a, b) in enumerate(zip(stored, current))
                     if (found := _model_difference(a, b, f"{where}[{i}]")) is not None), None)
    return f"{where}: {stored!r} in the checkpoint, {current!r} in recipe.yaml"
