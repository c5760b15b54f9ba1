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

``--dataset trees|nuclei`` (issue 22) trains tinynas-n and the ultralytics peers (``--peer-python``,
``--peer-model``, default YOLOv8n) on a real split of ``real_datasets.py`` with the same size,
batch and seed, each as its own process on one thread, and prints CPU seconds per epoch side by
side with our ratio to each peer. CPU seconds are the process's and its loader workers' (``wait4``,
``pareto.run_measured``). Each tool trains twice, for ``--epochs`` and for ``--base-epochs``: the
difference over the extra epochs is the cost of an epoch (steps, augmentation, evaluation,
checkpoints) without the start-up and the closing evaluation, which are printed as well. Runs are
interleaved tool by tool, ``--repeats`` times, and medians are reported:

    python benchmarks/train_speed.py --dataset trees --peer-python PEER/bin/python \
        [--peer-model yolov8n.yaml yolo11n.yaml yolo26n.yaml] [--epochs 6] [--base-epochs 1] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

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
    small.add_argument("--epochs", type=int, default=None, help="default 4 (6 with --dataset)")
    small.add_argument("--workers", type=int, default=2)
    small.add_argument("--cache", choices=("auto", "ram", "none"), default=None, help="data.cache (default: auto)")
    small.add_argument("--no-persistent", action="store_true", help="start the loader workers again every epoch")
    small.add_argument("--drop-last", action="store_true", help="drop the last partial batch of every epoch")
    real = parser.add_argument_group("real dataset: CPU seconds per epoch against the ultralytics peers")
    real.add_argument("--dataset", choices=("trees", "nuclei"))
    real.add_argument("--peer-python", help="Python of a venv with ultralytics (see pareto.py)")
    real.add_argument("--peer-model", nargs="*", default=["yolov8n.yaml"], help="none: tinynas-n alone")
    real.add_argument("--base-epochs", type=int, default=1, help="the shorter of each tool's two trainings")
    real.add_argument("--repeats", type=int, default=1)
    real.add_argument("--seed", type=int, default=0)
    real.add_argument("--data-root", type=Path, default=Path("runs/real-data/data"))
    real.add_argument("--wheels", type=Path, default=Path("runs/real-data/wheels"))
    real.add_argument("--out", type=Path, default=Path("runs/train-speed"))
    args = parser.parse_args()
    if args.dataset:
        args.epochs = args.epochs or 6
        if args.peer_model and not args.peer_python:
            parser.error("--dataset needs --peer-python (or --peer-model with no model)")
        if args.epochs <= args.base_epochs:
            parser.error("--epochs must be more than --base-epochs")
        args.batch = args.batch or 16
        real_dataset(args)
        return
    if args.small_dataset:
        args.batch = args.batch or 16
        args.epochs = args.epochs or 4
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


# The peer trains as benchmarks/peer_ultralytics.py trains it (its defaults, no plots), and
# nothing else: its val predictions, model info and export are not training.
PEER_TRAIN = """
import os, sys
from pathlib import Path
os.environ.setdefault("YOLO_OFFLINE", "1")
from ultralytics import YOLO, settings
settings.update({"sync": False})
model, data, epochs, imgsz, batch, seed, out = sys.argv[1:]
out = Path(out).resolve()
YOLO(model).train(data=data, epochs=int(epochs), imgsz=int(imgsz), batch=int(batch), seed=int(seed), device="cpu",
                  project=str(out.parent), name=out.name, exist_ok=True, pretrained=False, plots=False)
"""


def real_dataset(args) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from pareto import run_measured
    from real_datasets import build

    dataset = build(args.dataset, args.data_root, args.wheels)
    print(dataset.summary())
    out = args.out / f"{args.dataset}-{args.size}-b{args.batch}-s{args.seed}"
    out.mkdir(parents=True, exist_ok=True)

    def tinynas_command(folder: Path, epochs: int) -> list[str]:
        recipe = {"name": folder.name, "out": str(folder), "model": "tinynas-n",
                  "data": {"train_images": str(dataset.train_images), "train_annotations": str(dataset.train_annotations),
                           "val_images": str(dataset.val_images), "val_annotations": str(dataset.val_annotations),
                           "size": args.size},
                  "train": {"epochs": epochs, "batch_size": args.batch, "seed": args.seed}}
        path = folder.parent / f"{folder.name}.yaml"
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        return [sys.executable, "-m", "tinynas", "train", "--quiet", str(path)]

    def peer_command(model: str):
        def command(folder: Path, epochs: int) -> list[str]:
            return [args.peer_python, "-c", PEER_TRAIN, model, str(dataset.yolo_yaml), str(epochs), str(args.size),
                    str(args.batch), str(args.seed), str(folder)]
        return command

    tools = {"tinynas-n": tinynas_command, **{Path(m).stem: peer_command(m) for m in args.peer_model}}
    cpu: dict[str, dict[int, list[float]]] = {name: {args.base_epochs: [], args.epochs: []} for name in tools}
    for repeat in range(args.repeats):
        names = list(tools)
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:  # each tool first in turn
            for epochs in (args.base_epochs, args.epochs):
                folder = out / f"{name}-e{epochs}-r{repeat}"
                cpu_file = out / f"{folder.name}.cpu.json"
                if not cpu_file.is_file():  # a finished measurement is read back, not redone
                    shutil.rmtree(folder, ignore_errors=True)
                    run_measured(tools[name](folder, epochs), cpu_file)
                cpu[name][epochs].append(json.loads(cpu_file.read_text())["cpu_seconds"])
                print(f"{name}, {epochs} epochs, repeat {repeat + 1}: {cpu[name][epochs][-1]:.1f} CPU s", flush=True)

    extra = args.epochs - args.base_epochs
    rows = {}
    for name, runs in cpu.items():
        short, long = statistics.median(runs[args.base_epochs]), statistics.median(runs[args.epochs])
        per_epoch = (long - short) / extra
        rows[name] = {"cpu_seconds": {str(k): v for k, v in runs.items()}, "per_epoch": per_epoch,
                      "fixed": short - args.base_epochs * per_epoch, "whole_run_per_epoch": long / args.epochs}
    print(f"\n{args.dataset} at {args.size}, batch {args.batch}, seed {args.seed}, one thread a process, "
          f"medians of {args.repeats} run(s): CPU s per epoch = (CPU s of {args.epochs} epochs - "
          f"CPU s of {args.base_epochs}) / {extra}")
    print(f"{'model':<12} {'CPU s/epoch':>12} {'start+end':>10} {f'{args.epochs}-epoch run / epoch':>24}")
    for name, row in rows.items():
        print(f"{name:<12} {row['per_epoch']:>12.2f} {row['fixed']:>10.1f} {row['whole_run_per_epoch']:>24.2f}")
    ours = rows["tinynas-n"]
    for name, row in rows.items():
        if name != "tinynas-n":
            print(f"tinynas-n / {name}: {ours['per_epoch'] / row['per_epoch']:.2f}x CPU per epoch, "
                  f"{ours['whole_run_per_epoch'] / row['whole_run_per_epoch']:.2f}x over the {args.epochs}-epoch run")
    (out / "train_speed.json").write_text(json.dumps({"dataset": args.dataset, "size": args.size, "batch": args.batch,
                                                      "epochs": args.epochs, "base_epochs": args.base_epochs,
                                                      "models": rows}, indent=1) + "\n")


def _forever(loader):
    while True:
        yield from loader


if __name__ == "__main__":
    main()
