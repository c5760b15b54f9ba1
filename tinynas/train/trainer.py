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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from ..checkpoint import load_checkpoint, load_detector, load_detector_checkpoint, save_checkpoint
from ..data.cache import cache_datasets
from ..data.check import ensure_trainable, print_warnings, require_boxes
from ..data.coco import CocoDataset
from ..data.collate import make_loader, set_loader_epoch
from ..data.pipeline import DetectionDataset
from ..detect.anchors import anchor_points
from ..detect.detector import Detector
from ..nn.fake_quant import prepare_fake_quant
from ..nn.rep_forms import DEFAULT_FORM, set_rep_form
from ..detect.input_layout import to_training_input
from ..detect.recipe_difference import model_difference
from ..errors import UserError
from ..detect.footprint import check_detector_fits
from ..preflight import require
from ..runfolder import owned_folder
from .ema import ModelEMA
from .coco_eval import coco_metrics
from .diagnostic_plots import write_diagnostics
from .evaluate import evaluate, predict_split
from .composed_loss import ComposedDetectionLoss
from .auto import format_choices, resolve_auto
from .extra_loss import ExtraLoss, StepContext
from .init_weights import load_initial_weights
from .tensorboard_log import PACKAGES as TENSORBOARD_PACKAGES
from .tensorboard_log import TensorBoardLog
from .optim import build_optimizer
from .repopt import (check_scales, constant_scales, gradient_masks, load_scales_file, reinitialize, save_scales,
                     scales_from_checkpoint)
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
          source: str = "<recipe>", extra_loss: ExtraLoss | None = None,
          callbacks: Mapping[str, Sequence[Callable]] | None = None) -> TrainResult:
    """Train (or resume) ``recipe``; ``stop_after`` ends this call after that many more epochs.

    ``extra_loss`` is added to the detection loss (see ``extra_loss.py``). A recipe that names a
    teacher needs the distillation term: ``tinynas.api.train_detector`` builds it, or
    ``tinynas.distill.distillation_term(recipe.distill)`` for a caller of this function.
    ``callbacks`` maps events of ``EVENTS`` to functions (see ``Trainer``).
    """
    if recipe.distill.teacher and extra_loss is None:
        raise ValueError(f"the recipe names a teacher ({recipe.distill.teacher}) but no distillation term was "
                         "given: pass extra_loss=tinynas.distill.distillation_term(recipe.distill)")
    rank, local_rank, world = _distributed()
    own_group = world > 1 and not dist.is_initialized()
    if own_group:
        dist.init_process_group("nccl" if torch.cuda.is_available() and recipe.train.device != "cpu" else "gloo")
    try:
        trainer = Trainer(recipe, resume, stop_after, progress, source, extra_loss, rank, local_rank, world,
                          callbacks)
        if rank != 0:
            return trainer.run()
        with owned_folder(recipe.run_dir):  # one writer per run folder; other ranks write nothing
            return trainer.run()
    finally:
        if own_group:
            dist.destroy_process_group()


# What a callback can follow: ``train_start`` (trainer: set up, restored, before the first epoch
# of this call), ``epoch_end`` (trainer, the epoch's metrics row, after its files are written;
# main process only) and ``train_end`` (trainer, the TrainResult).
EVENTS = ("train_start", "epoch_end", "train_end")


class Trainer:
    """One call of ``train`` in one process, in named phases.

    ``run`` calls them in turn: ``open_folder`` (fresh or resumable), ``set_up_data``,
    ``set_up_model``, ``set_up_schedule`` (loader, iterations, the ``auto`` choices),
    ``set_up_optimizer``, ``restore`` (a resume; a fresh run starts its files), then for each
    epoch ``train_epoch`` and ``evaluate_and_save``. The phases run in this order because the
    torch RNG is drawn in it: a resumed run equals an uninterrupted one only so. ``callbacks``
    maps an event of ``EVENTS`` to functions; the epoch line printed with ``progress`` is one.
    """

    def __init__(self, recipe: TrainRecipe, resume: bool = False, stop_after: int | None = None,
                 progress: bool = True, source: str = "<recipe>", extra_loss: ExtraLoss | None = None,
                 rank: int = 0, local_rank: int = 0, world: int = 1,
                 callbacks: Mapping[str, Sequence[Callable]] | None = None):
        self.recipe = recipe
        self.resume = resume
        self.stop_after = stop_after
        self.progress = progress
        self.source = source
        self.extra_loss = extra_loss
        self.rank, self.local_rank, self.world = rank, local_rank, world
        self.callbacks = callbacks

    def run(self) -> TrainResult:
        self.open_folder()
        self.set_up_data()
        self.set_up_model()
        self.set_up_schedule()
        self.set_up_optimizer()
        self.restore()
        self.emit("train_start")
        for epoch in range(self.start_epoch, self.end_epoch):
            started = time.time()
            losses, lr = self.train_epoch(epoch)
            self.evaluate_and_save(epoch, losses, lr, started)
        result = TrainResult(self.run_dir, self.end_epoch, self.best_ap, self.last_metrics, self.main_process)
        self.emit("train_end", result)
        return result

    def emit(self, event: str, *values) -> None:
        handlers = list((self.callbacks or {}).get(event, ()))
        if event == "epoch_end" and self.progress:
            handlers.insert(0, _print_epoch)
        if self.board is not None:
            handlers.insert(0, getattr(self.board, event))
        for handler in handlers:
            handler(self, *values)

    # -- phases ------------------------------------------------------------------------------
    def open_folder(self) -> None:
        """The run folder must hold a run to resume, or none to start."""
        self.device = _resolve_device(self.recipe.train.device, self.local_rank, self.source)
        self.main_process = self.rank == 0
        self.run_dir = self.recipe.run_dir
        self.run_files = run = TrainRun(self.run_dir)
        if self.resume and not run.last_path.is_file():
            raise UserError(str(self.run_dir), "last.pt", "nothing to resume: the run stopped before its first "
                            "epoch ended (no checkpoint); start it again with: tinynas train "
                            f"{run.recipe_path} out={self.run_dir}")
        if not self.resume and run.last_path.exists():
            raise UserError(str(self.run_dir), "", "this run folder already holds a run; resume it with --resume "
                            "or choose another name")
        init = self.recipe.train.init
        if self.recipe.quant.qat and not init:
            # Quantization-aware training fine-tunes a float model; by default the teacher, its float self.
            init = self.recipe.distill.teacher
            if not init:
                raise UserError(self.source, "quant.qat", "fine-tunes a trained float model: give train.init or "
                                                         "a teacher (--teacher, distill.teacher: its own float self)")
            self.recipe = replace(self.recipe, train=replace(self.recipe.train, init=init))
        if init and not self.resume and not Path(init).is_file():  # before the data checks take their time
            raise UserError(self.source, "train.init", f"no such checkpoint: {init}")
        self.board = None
        if self.recipe.train.tensorboard and self.main_process:
            require(TENSORBOARD_PACKAGES, self.source, "train.tensorboard")
            self.board = TensorBoardLog(self.run_dir)

    def set_up_data(self) -> None:
        """The checked COCO sets; the model takes their class count; the seeds are set."""
        self.train_coco, self.val_coco = _datasets(self.recipe, self.source)
        self.recipe = resolve_model(self.recipe, self.train_coco.num_classes, self.source)
        torch.manual_seed(self.recipe.train.seed)
        random.seed(self.recipe.train.seed)

    def set_up_model(self) -> None:
        recipe, cfg = self.recipe, self.recipe.train
        self.amp = cfg.amp and self.device.type == "cuda"
        self.per_rank_batch = max(1, cfg.batch_size // self.world)
        # Before anything is allocated: a batch or size beyond this device is one line, not an OOM.
        check_detector_fits(recipe.model, recipe.data.size, self.per_rank_batch, training=True, amp=self.amp,
                            device=self.device, source=self.source, field="train.batch_size")
        self.model = Detector(recipe.model)
        self.set_up_rep_form()
        _set_bn(self.model, cfg.bn_eps, cfg.bn_momentum)
        if cfg.init and not self.resume:  # a resume restores every weight from last.pt
            report = load_initial_weights(self.model, self.train_coco.names, cfg.init, self.source)
            if self.main_process:
                tqdm.write(report.summary(), file=sys.stderr)
        if recipe.quant.qat:  # int8 simulated on the deployed (fused) convs, nn/fake_quant.py
            prepare_fake_quant(self.model.fuse(), recipe.quant.activations, recipe.quant.momentum)
        self.model.to(self.device)
        # Here, before anything else draws from the torch RNG, so that a term's initial weights are
        # the same in every run of this recipe.
        self.extra_modules = (self.extra_loss.attach(self.model, self.device, self.amp)
                              if self.extra_loss is not None else None)

    def set_up_rep_form(self) -> None:
        """The RepConv units in ``train.rep_form``; under RepOptimizer, its factors (from the
        hyper-search checkpoint, or all 1) start the weights, and a resume reads them back from the run."""
        cfg = self.recipe.train
        if cfg.rep_form != DEFAULT_FORM:
            set_rep_form(self.model, cfg.rep_form)
        self.repopt_scales = None
        if cfg.rep_form != "plain":
            return
        path = self.run_files.repopt_scales_path
        if self.resume:
            if not path.is_file():
                raise UserError(str(path), "", "missing: a RepOptimizer run keeps its factors here to resume")
            scales = load_scales_file(path)
            check_scales(self.model, scales, str(path), "")
        else:
            scales = (scales_from_checkpoint(cfg.repopt_scales, self.model, self.source, "train.repopt_scales")
                      if cfg.repopt_scales else constant_scales(self.model))
            reinitialize(self.model, scales)
            if self.main_process:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                save_scales(path, scales)
        self.repopt_scales = scales

    def set_up_schedule(self) -> None:
        """Datasets, cache and loader; then the ``auto`` settings, which depend on its length."""
        recipe, cfg = self.recipe, self.recipe.train
        self.train_set = DetectionDataset(self.train_coco, recipe.data.size, train=True, augment=recipe.augment,
                                          seed=cfg.seed, epochs=cfg.epochs)
        self.val_set = DetectionDataset(self.val_coco, recipe.data.size, train=False)
        # Before the loader's workers start, so that they share the cached pixels.
        cache_datasets(recipe.data.cache, [self.train_coco, self.val_coco], recipe.data.size,
                       processes=int(os.environ.get("LOCAL_WORLD_SIZE", self.world)),
                       progress=self.progress and self.main_process)
        # Every image every epoch: a last partial batch is kept (a single leftover image joins the
        # batch before it), and EpochSampler pads the ranks to equal lengths for DDP.
        self.loader = make_loader(self.train_set, self.per_rank_batch, shuffle=True, seed=cfg.seed,
                                  workers=recipe.data.workers, rank=self.rank, world_size=self.world)
        self.iters_per_epoch = iters = max(1, len(self.loader))
        self.recipe, chosen = resolve_auto(recipe, len(self.train_set), iters, self.per_rank_batch * self.world)
        cfg = self.recipe.train
        self.train_set.augment = self.recipe.augment  # before the first batch starts the (persistent) workers
        self.total_iters = cfg.epochs * iters
        self.warmup_iters = int(round(cfg.warmup_epochs * iters))
        self.no_aug_from = (cfg.epochs - self.recipe.augment.no_aug_epochs) * iters
        self.base_lr = scaled_lr(cfg.lr_per_64, self.per_rank_batch * self.world)
        if self.main_process and chosen:  # once, even under --quiet: these values decide the run
            tqdm.write(f"{self.source}: {format_choices(chosen)}", file=sys.stderr)
        if self.main_process and self.progress:
            _warn_slow_ema(cfg.ema_decay, self.total_iters, self.source)

    def set_up_optimizer(self) -> None:
        """Optimiser, AMP scaler, DDP wrapper, EMA and the detection loss."""
        cfg, model = self.recipe.train, self.model
        self.step_module = _TrainStep(model, self.extra_loss, self.extra_modules, self.total_iters, self.no_aug_from)
        masks = (gradient_masks(model, self.repopt_scales, cfg.optimizer) if self.repopt_scales is not None
                 else None)
        self.optimizer = build_optimizer(self.step_module, cfg.optimizer, self.base_lr, cfg.momentum,
                                         cfg.weight_decay, grad_masks=masks)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.train_step: nn.Module = self.step_module
        if self.world > 1:
            if self.device.type == "cuda":  # SyncBatchNorm has no CPU kernels; CPU ranks keep per-rank BN
                self.step_module = nn.SyncBatchNorm.convert_sync_batchnorm(self.step_module)
            self.train_step = nn.parallel.DistributedDataParallel(
                self.step_module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=self.extra_loss is not None)  # a term may skip iterations
        self.ema = ModelEMA(model, cfg.ema_decay, cfg.ema_ramp)
        self.loss_fn = ComposedDetectionLoss(model.num_classes, model.head.reg_max,
                                             cfg.loss_options(model.head.reg_max))

    def restore(self) -> None:
        """A resume loads last.pt and makes the folder agree with it; a fresh run starts its files."""
        run = self.run_files
        self.log = MetricsLog(run.metrics_path)
        self.start_epoch, self.best_ap, self.best_epoch = 0, -1.0, 0
        if self.resume:
            self.start_epoch, self.best_ap = _restore(run.last_path, self.model, self.ema, self.optimizer,
                                                      self.scaler, self.extra_loss)
            if self.main_process:
                self.best_epoch = _match_last(run, self.log, self.start_epoch, self.best_ap, self.ema.module,
                                              self.train_coco.names, self.train_coco.category_ids,
                                              self.recipe.data.size)
        elif self.main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_recipe(run.recipe_path, self.recipe)
            self.log.reset()
            # A run killed in its first epoch may have left these before any last.pt: it starts over.
            run.best_path.unlink(missing_ok=True)
            run.plot_path.unlink(missing_ok=True)
        epochs = self.recipe.train.epochs
        self.end_epoch = epochs if self.stop_after is None else min(epochs, self.start_epoch + self.stop_after)
        self.last_metrics: dict = {}
        self.last_saved = self.last_plotted = time.monotonic()

    def train_epoch(self, epoch: int) -> tuple[dict[str, float], float]:
        """One pass over the loader; the epoch's mean losses and its last learning rate."""
        cfg = self.recipe.train
        set_loader_epoch(self.loader, epoch)
        self.train_step.train()
        sums: dict[str, float] = {}
        lr = 0.0
        bar = tqdm(self.loader, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=not (self.progress and self.main_process), leave=False, dynamic_ncols=True)
        for step, (images, targets) in enumerate(bar):
            it = epoch * self.iters_per_epoch + step
            lr = learning_rate(it, self.total_iters, self.base_lr, self.warmup_iters, cfg.min_lr_ratio)
            bias_lr = bias_learning_rate(it, lr, self.warmup_iters, cfg.warmup_bias_lr)
            for group in self.optimizer.param_groups:
                group["lr"] = bias_lr if group.get("kind") == "bias" else lr
            losses, weight = self.train_batch(images, targets, it, epoch, step)
            for key, value in losses.items():
                if key != "num_pos":
                    sums[key] = sums.get(key, 0.0) + float(value.detach())
            if self.extra_loss is not None:  # the effective weight, logged as the epoch's mean
                key = f"{self.extra_loss.name}_weight"
                sums[key] = sums.get(key, 0.0) + weight
                for key, value in getattr(self.extra_loss, "logged", dict)().items():
                    sums[key] = sums.get(key, 0.0) + value
            bar.set_postfix({k: f"{v / (step + 1):.3f}" for k, v in sums.items()}, lr=f"{lr:.2e}")
        bar.close()
        return {k: v / self.iters_per_epoch for k, v in sums.items()}, lr

    def train_batch(self, images, targets, it: int, epoch: int, step: int) -> tuple[dict, float]:
        """Forward, detection loss plus the extra term, one optimiser step and the EMA update."""
        device, extra_loss, scaler = self.device, self.extra_loss, self.scaler
        images = to_training_input(images, device, non_blocking=True)
        targets = [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]
        with torch.autocast(device.type, enabled=self.amp):
            feats, cls_logits, reg_logits, extra = self.train_step(images, it)
        if not (torch.isfinite(cls_logits).all() and torch.isfinite(reg_logits).all()):
            raise _diverged(self.run_dir, epoch, step, self.run_files.last_path)
        points, strides = anchor_points([f.shape[-2:] for f in feats], self.model.head.strides,
                                        dtype=torch.float32, device=device)
        losses = self.loss_fn(cls_logits.float(), reg_logits.float(), points, strides, targets)
        loss = losses["loss"]
        step_context = self.step_module.step
        if extra_loss is not None and self.extra_modules is None:
            # A term without modules comes after the detection loss and sees the head outputs
            # that loss used (under DDP, the forward's copies).
            step_context = replace(step_context, cls_logits=cls_logits, reg_logits=reg_logits)
            extra = extra_loss.loss(step_context)
        weight = 0.0
        if extra is not None:
            step_context = replace(step_context, targets=tuple(targets))
            weight = extra_loss.weight(step_context, extra, loss, scaler.get_scale() if scaler.is_enabled() else 1.0)
            losses[extra_loss.name] = extra.detach()
            loss = loss + weight * extra
        if not torch.isfinite(loss):
            raise _diverged(self.run_dir, epoch, step, self.run_files.last_path)
        self.optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if self.recipe.train.grad_clip > 0:
            scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.step_module.parameters(), self.recipe.train.grad_clip)
        scaler.step(self.optimizer)
        scaler.update()
        self.ema.update(self.model)
        return losses, weight

    def evaluate_and_save(self, epoch: int, losses: dict[str, float], lr: float, started: float) -> None:
        """Val AP when due; best.pt, the metrics row and the plot; last.pt last (the resume point)."""
        recipe, done = self.recipe, epoch + 1
        metrics: dict = {}
        if self.main_process and (done % recipe.train.eval_interval == 0 or done == recipe.train.epochs):
            e = recipe.eval
            metrics = evaluate(self.ema.module, self.val_set, batch_size=e.batch_size, conf_threshold=e.conf,
                               iou_threshold=e.iou, max_detections=e.max_det, device=self.device,
                               progress=self.progress)
        if not self.main_process:
            return
        run, names, ids, size = self.run_files, self.train_coco.names, self.train_coco.category_ids, recipe.data.size
        ap = metrics.get("AP", float("nan"))
        improved = not math.isnan(ap) and ap > self.best_ap
        self.best_ap = max(self.best_ap, ap) if not math.isnan(ap) else self.best_ap
        final = done == self.end_epoch
        # last.pt, the resume point, is the epoch's last durable write: a kill before it resumes
        # from the previous one and redoes this epoch identically, so best.pt, the row and the
        # plot are never skipped.
        if improved:
            self.best_epoch = done
            save_checkpoint(run.best_path, self.ema.module, names, extra={"epoch": done, "AP": ap},
                            category_ids=ids, size=size)
        row = {"epoch": done, "lr": lr, **losses, **{k: v for k, v in metrics.items() if isinstance(v, float)},
               "seconds": time.time() - started}
        self.log.append(row)
        if final or time.monotonic() - self.last_plotted >= RESUME_SAVE_SECONDS:
            plot_metrics(run.metrics_path, run.plot_path)
            self.last_plotted = time.monotonic()
        if final and done == recipe.train.epochs:
            self.write_diagnostics()
        if final or done == self.start_epoch + 1 or time.monotonic() - self.last_saved >= RESUME_SAVE_SECONDS:
            state = _resume_state(done, self.best_ap, self.best_epoch, self.model, self.ema, self.optimizer,
                                  self.scaler, self.extra_loss)
            save_checkpoint(run.last_path, self.ema.module, names, extra=state, category_ids=ids, size=size)
            self.last_saved = time.monotonic()
        self.last_metrics = row
        self.emit("epoch_end", row)


    def write_diagnostics(self) -> None:
        """PR and F1 curves, the confusion matrix and val images of the best weights (the last
        ones when no epoch was evaluated), into the run folder before the last last.pt."""
        e, run = self.recipe.eval, self.run_files
        model = load_detector(run.best_path)[0].to(self.device) if run.best_path.is_file() else self.ema.module
        results = predict_split(model, self.val_set, batch_size=e.batch_size, conf_threshold=e.conf,
                                iou_threshold=e.iou, max_detections=e.max_det, device=self.device)
        metrics = coco_metrics(self.val_coco.annotations, results, diagnostics=True)
        write_diagnostics(self.run_dir, metrics, self.val_coco, results)


def _print_epoch(trainer: Trainer, row: dict) -> None:
    shown = ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k not in ("epoch", "seconds"))
    tqdm.write(f"epoch {row['epoch']}/{trainer.recipe.train.epochs}: {shown}")


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
    difference = model_difference(ckpt.recipe.to_dict(), model.recipe.to_dict())
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
