"""Training throughput of a detector on this machine (issue 6: damoyolo-t at 320 on the CPU).

Times the real training step — augmented batch from the data pipeline (mosaic, mixup,
affine, flip, HSV), forward, AlignOTA assignment, QFL/GIoU/DFL, backward, SGD step, EMA
update — over synthetic COCO images, and prints images/s with the share spent on data.

    python benchmarks/train_speed.py [--model damoyolo-t] [--size 320] [--batch 8] [--steps 6]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from tinynas.data import CocoDataset, DetectionDataset, make_loader, make_synthetic_dataset
from tinynas.detect.anchors import anchor_points
from tinynas.detect.detector import Detector
from tinynas.detect.recipe import load_model_recipe
from tinynas.train.ema import ModelEMA
from tinynas.train.losses import DetectionLoss
from tinynas.train.optim import build_optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="damoyolo-t")
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6, help="timed steps (after one warm-up step)")
    args = parser.parse_args()

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        data = make_synthetic_dataset(tmp, images=4 * args.batch, val_images=0, size=args.size)
        coco = CocoDataset(data.train_annotations, data.train_images)
        recipe = load_model_recipe(args.model).with_num_classes(coco.num_classes)
        model = Detector(recipe).train()
        dataset = DetectionDataset(coco, args.size, train=True)
        loader = make_loader(dataset, args.batch, shuffle=True)
        loss_fn = DetectionLoss(model.num_classes, model.head.reg_max)
        optimizer = build_optimizer(model, 0.01 * args.batch / 64)
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


def _forever(loader):
    while True:
        yield from loader


if __name__ == "__main__":
    main()
