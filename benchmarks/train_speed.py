"""Training throughput of a detector on this machine (issue 6: damoyolo-t at 320 on the CPU).

Times the real training step — augmented batch from the data pipeline (mosaic, mixup,
affine, flip, HSV), forward, AlignOTA assignment, QFL/GIoU/DFL, backward, SGD step, EMA
update — over synthetic COCO images, and prints images/s with the share spent on data.

    python benchmarks/train_speed.py [--model damoyolo-t] [--size 320] [--batch 8] [--steps 6]

``--small-dataset`` (issue 12) instead runs the real ``train`` for a few epochs on 43 synthetic
images, batch 16 (3 iterations an epoch), 2 loader workers, and prints seconds per epoch with
everything an epoch costs besides the steps: worker start-up, evaluation, checkpoints. The
``--no-persistent``, ``--drop-last`` and ``--cache none`` switches bring back, one at a time,
what the trainer did before (workers restarted every epoch, the last partial batch dropped,
every image decoded on every use):

    python benchmarks/train_speed.py --small-dataset [--epochs 4] [--workers 2]
    python benchmarks/train_speed.py --small-dataset --no-persistent --drop-last --cache none
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from tinynas.data import CocoDataset, DetectionDataset, make_loader, make_synthetic_dataset
from tinynas.detect.anchors import anchor_points
from tinynas.detect.detector import Detector
from tinynas.detect.model_recipe import load_model_recipe
from tinynas.train import trainer as trainer_module
from tinynas.train.ema import ModelEMA
from tinynas.train.losses import DetectionLoss
from tinynas.train.optim import build_optimizer
from tinynas.train.recipe import parse_train_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="damoyolo-t")
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--batch", type=int, default=None, help="default 8 (16 with --small-dataset)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps (after one warm-up step)")
    small = parser.add_argument_group("small dataset: seconds per epoch of the real trainer")
    small.add_argument("--small-dataset", action="store_true")
    small.add_argument("--images", type=int, default=43)
    small.add_argument("--epochs", type=int, default=4)
    small.add_argument("--workers", type=int, default=2)
    small.add_argument("--cache", choices=("auto", "ram", "none"), default=None, help="data.cache (default: auto)")
    small.add_argument("--no-persistent", action="store_true", help="start the loader workers again every epoch")
    small.add_argument("--drop-last", action="store_true", help="drop the last partial batch of every epoch")
    args = parser.parse_args()
    if args.small_dataset:
        args.batch = args.batch or 16
        small_dataset(args)
        return
    args.batch = args.batch or 8

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        data = make_synthetic_dataset(tmp, images=4 * args.batch, val_images=0, size=args.size)
        coco = CocoDataset(data.train_annotations, data.train_images)
        recipe = load_model_recipe(args.model).with_num_classes(coco.num_classes)
        model = Detector(recipe).train()
        dataset = DetectionDataset(coco, args.size, train=True)
        loader = make_loader(dataset, args.batch, shuffle=True)
        loss_fn = DetectionLoss(model.num_classes, model.head.reg_max)
        optimizer = build_optimizer(model, "sgd", 0.01 * args.batch / 64)
        ema = ModelEMA(model)

        batches = _forever(loader)
        data_time = step_time = 0.0
        images_done = 0
        for step in range(args.steps + 1):  # step 0 is warm-up
            t0 = time.perf_counter()
            images, targets = next(batches)
            t1 = time.perf_counter()
            feats = model.features(images)
            cls_logits, reg_logits = model.head(feats)
            points, strides = anchor_points([f.shape[-2:] for f in feats], model.head.strides)
            loss = loss_fn(cls_logits, reg_logits, points, strides, targets)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            ema.update(model)
            t2 = time.perf_counter()
            if step > 0:
                data_time += t1 - t0
                step_time += t2 - t1
                images_done += images.shape[0]

    total = data_time + step_time
    print(f"{args.model} at {args.size}x{args.size}, batch {args.batch}, torch threads {torch.get_num_threads()}: "
          f"{images_done / total:.2f} training images/s "
          f"({100 * data_time / total:.0f}% of the time in data loading and augmentation; "
          f"model step alone {images_done / step_time:.2f} images/s)")


def small_dataset(args) -> None:
    # Only switches that are asked for reach make_loader, so this also runs against older trees.
    switches = {**({"persistent_workers": False} if args.no_persistent else {}),
                **({"drop_last": True} if args.drop_last else {})}
    loaders = []

    def make_loader_with_switches(*a, **kw):
        loaders.append(make_loader(*a, **{**kw, **switches}))
        return loaders[-1]

    # An epoch ends when its metrics row is written (after evaluation and checkpoints).
    ends = []

    class TimedLog(trainer_module.MetricsLog):
        def append(self, row):
            super().append(row)
            ends.append(time.perf_counter())

    trainer_module.make_loader = make_loader_with_switches
    trainer_module.MetricsLog = TimedLog
    with tempfile.TemporaryDirectory() as tmp:
        data = make_synthetic_dataset(tmp, images=args.images, val_images=8, size=args.size)
        doc = {
            "name": "small", "model": args.model, "out": str(Path(tmp) / "run"),
            "data": {"train_images": str(data.train_images), "train_annotations": str(data.train_annotations),
                     "val_images": str(data.val_images), "val_annotations": str(data.val_annotations),
                     "size": args.size, "workers": args.workers,
                     **({"cache": args.cache} if args.cache else {})},
            "train": {"epochs": args.epochs, "batch_size": args.batch},
        }
        recipe = parse_train_recipe(doc, "train_speed")
        torch.manual_seed(0)
        t0 = time.perf_counter()
        trainer_module.train(recipe, progress=False)
    batches = list(loaders[0].batch_sampler)
    first, later = ends[0] - t0, [b - a for a, b in zip(ends, ends[1:])]
    print(f"{args.model} at {args.size}, {args.images} images, batch {args.batch} ({len(batches)} iterations, "
          f"{sum(map(len, batches))} images an epoch), {args.workers} workers"
          f"{', workers restarted every epoch' if args.no_persistent else ''}"
          f"{', last partial batch dropped' if args.drop_last else ''}, data.cache {args.cache or 'default'}, "
          f"torch threads {torch.get_num_threads()}: {statistics.median(later or [first]):.2f} s/epoch "
          f"(median wall time of epochs 2-{args.epochs}: loader, steps, evaluation, checkpoints; "
          f"first epoch with start-up {first:.2f} s)")


def _forever(loader):
    while True:
        yield from loader


if __name__ == "__main__":
    main()
