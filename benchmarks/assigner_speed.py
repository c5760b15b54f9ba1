"""How long each label assigner takes for one image, on one CPU thread.

A COCO-sized scene at 640: 8,400 anchors (strides 8/16/32), 80 classes, ``--boxes`` boxes
(20 by default: COCO averages 7, crowded images have 50+). Prints the median milliseconds
per image of alignota, simota and tal, and of AlignOTA's class cost written literally
(the [candidates, boxes, classes] tensor it was before), so the gain is measured in one run.

    python benchmarks/assigner_speed.py [--boxes 20] [--classes 80] [--repeat 15]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import tinynas.train.assigner as alignota_module
from tinynas.train.assigners import create_assigner


def scene(classes: int, boxes: int, size: int = 640, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    points, strides = [], []
    for stride in (8, 16, 32):
        side = torch.arange(stride / 2, size, stride)
        grid = torch.stack(torch.meshgrid(side, side, indexing="xy"), -1).reshape(-1, 2)
        points.append(grid)
        strides.append(torch.full((len(grid),), float(stride)))
    points, strides = torch.cat(points), torch.cat(strides)
    corner = torch.rand(boxes, 2, generator=gen) * (size - 200)
    gt = torch.cat([corner, corner + 20 + torch.rand(boxes, 2, generator=gen) * 180], 1)
    labels = torch.randint(0, classes, (boxes,), generator=gen)
    scores = torch.rand(len(points), classes, generator=gen) * 0.3
    half = (strides * 2)[:, None]
    pred = torch.cat([points - half, points + half], 1) + torch.randn(len(points), 4, generator=gen) * 4
    return scores, pred, points, strides, gt, labels


def literal_cost(probs, gt_labels, ious):
    soft = F.one_hot(gt_labels, probs.shape[1]).float()[None] * ious[..., None]
    prob = probs[:, None, :].expand_as(soft).clamp(1e-6, 1 - 1e-6)
    return (F.binary_cross_entropy(prob, soft, reduction="none") * (soft - prob).abs().pow(2)).sum(-1)


def median_ms(assign, inputs, repeat: int) -> float:
    assign(*inputs)  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        assign(*inputs)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", type=int, default=20)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    inputs = scene(args.classes, args.boxes)
    print(f"{len(inputs[0])} anchors, {args.classes} classes, {args.boxes} boxes, 1 thread; ms per image (median of {args.repeat})")
    rows = {name: median_ms(create_assigner(name).assign, inputs, args.repeat) for name in ("alignota", "simota", "tal")}
    fast = alignota_module.quality_focal_cost
    alignota_module.quality_focal_cost = literal_cost
    try:
        rows["alignota, literal class cost"] = median_ms(create_assigner("alignota").assign, inputs, args.repeat)
    finally:
        alignota_module.quality_focal_cost = fast
    for name, ms in rows.items():
        print(f"  {name:30s} {ms:8.2f} ms")
    print(f"AlignOTA's class cost in [K, C] + [K, G]: {rows['alignota, literal class cost'] / rows['alignota']:.1f}x faster "
          "than the literal [K, G, C] sum")


if __name__ == "__main__":
    main()
