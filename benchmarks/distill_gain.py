"""Does distillation help? Teacher vs plain student vs distilled students on synthetic shapes.

The data are six shapes (rectangle, ellipse, triangle, diamond, cross, ring) in random
colours, so only the outline tells a class, 3 to 10 objects of 8-35% of the image side:
a task on which a narrow student stays clearly below a wide teacher. (``--data easy`` is the
colour-coded three-shape set the tests use.) A wide CSP-wrapped teacher is trained once; a
narrow Res-wrapped student is then trained with the same epochs and seed alone and once per
``--method`` (``logit`` on the head outputs, ``cwd``/``mimic``/``mgd`` on the neck outputs;
cosine weight 1.0 -> 0.1 times the method's loss weight), for each seed. Prints every val AP
and each method's mean gain. Every run resumes; a finished run is read back, not retrained.
About 45 minutes on a 2-core CPU (teacher ~15, students ~30).

    python benchmarks/distill_gain.py [--out runs/bench-distill] [--seeds 0 1 2] [--method cwd:0.02 logit]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
from joblib import Parallel, delayed

from tinynas.data import make_synthetic_dataset
from tinynas.train.recipe import parse_train_recipe
from tinynas.api import train_detector as train  # distils when the recipe names a teacher

TEACHER_ARCH = [
    {"class": "ConvKXBNRELU", "in": 3, "out": 24, "s": 1, "k": 3},
    {"class": "SuperResKXKX", "in": 24, "out": 48, "s": 2, "k": 3, "L": 1, "btn": 32},
    {"class": "SuperResKXKX", "in": 48, "out": 96, "s": 2, "k": 3, "L": 2, "btn": 64},
    {"class": "SuperResKXKX", "in": 96, "out": 128, "s": 2, "k": 3, "L": 2, "btn": 96},
    {"class": "SuperResKXKX", "in": 128, "out": 128, "s": 1, "k": 3, "L": 1, "btn": 96},
    {"class": "SuperResKXKX", "in": 128, "out": 256, "s": 2, "k": 3, "L": 1, "btn": 128},
]
HARD_SHAPES = ("rectangle", "ellipse", "triangle", "diamond", "cross", "ring")
TINY_STUDENT_ARCH = [
    {"class": "ConvKXBNRELU", "in": 3, "out": 8, "s": 1, "k": 3},
    {"class": "SuperResK1KX", "in": 8, "out": 16, "s": 2, "k": 3, "L": 1, "btn": 8},
    {"class": "SuperResK1KX", "in": 16, "out": 16, "s": 2, "k": 3, "L": 1, "btn": 8},
    {"class": "SuperResK1KX", "in": 16, "out": 32, "s": 2, "k": 3, "L": 1, "btn": 16},
    {"class": "SuperResK1KX", "in": 32, "out": 32, "s": 1, "k": 3, "L": 1, "btn": 16},
    {"class": "SuperResK1KX", "in": 32, "out": 64, "s": 2, "k": 3, "L": 1, "btn": 32},
]
SMALL_STUDENT_ARCH = [
    {"class": "ConvKXBNRELU", "in": 3, "out": 16, "s": 1, "k": 3},
    {"class": "SuperResK1KX", "in": 16, "out": 32, "s": 2, "k": 3, "L": 1, "btn": 16},
    {"class": "SuperResK1KX", "in": 32, "out": 48, "s": 2, "k": 3, "L": 1, "btn": 32},
    {"class": "SuperResK1KX", "in": 48, "out": 64, "s": 2, "k": 3, "L": 2, "btn": 48},
    {"class": "SuperResK1KX", "in": 64, "out": 96, "s": 1, "k": 3, "L": 1, "btn": 48},
    {"class": "SuperResK1KX", "in": 96, "out": 128, "s": 2, "k": 3, "L": 1, "btn": 64},
]
# Loss weights (times the cosine 1.0 -> 0.1). At the start the feature losses' gradient on the
# student is ~30x the detection loss's at weight 1 (tiny head, fresh align convs), so they are
# scaled far down; the head-output loss is of the detection loss's order.
DEFAULT_WEIGHTS = {"cwd": 0.02, "mimic": 0.02, "mgd": 1.0, "logit": 1.0}
# name -> (backbone, neck widths): "tiny" is ~1/12 of the teacher's params, "small" ~1/3.
STUDENTS = {"tiny": (TINY_STUDENT_ARCH, [16, 32, 64]), "small": (SMALL_STUDENT_ARCH, [32, 64, 96])}


def recipe(data, out: Path, arch, wrap: str, neck: list[int], epochs: int, seed: int, teacher: str = "",
           method: str = "cwd", weight: float = 1.0, ema_decay: float = 0.99) -> dict:
    backbone = {"arch": arch, "wrap": wrap, "focus": True, "spp": True, "act": "relu", "reparam": True}
    if wrap == "res":
        backbone["out_indices"] = [2, 4, 5]
    return {
        "name": out.name, "out": str(out), "backbone": backbone,
        "neck": {"depth": 1.0, "hidden_ratio": 1.0, "out_channels": neck, "act": "relu"},
        "head": {"num_classes": len(data.classes), "reg_max": 16, "strides": [8, 16, 32]},
        "data": {"train_images": str(data.train_images), "train_annotations": str(data.train_annotations),
                 "val_images": str(data.val_images), "val_annotations": str(data.val_annotations), "size": 128},
        "train": {"epochs": epochs, "batch_size": 16, "lr_per_64": 0.08, "warmup_epochs": 1, "ema_ramp": 50.0,
                  "ema_decay": ema_decay,
                  "seed": seed, "eval_interval": epochs},
        "augment": {"no_aug_epochs": max(1, epochs // 6)},
        "distill": {"teacher": teacher, "method": method, "loss_weight": weight},
    }


def run(doc: dict, threads: int | None = None) -> float:
    if threads is not None:
        torch.set_num_threads(threads)
    r = parse_train_recipe(doc)
    if (r.run_dir / "last.pt").exists():
        from tinynas.train.run_files import MetricsLog
        rows = MetricsLog(r.run_dir / "metrics.csv").rows()
        if rows and int(rows[-1]["epoch"]) == r.train.epochs:
            return float(rows[-1]["AP"])
        return train(r, resume=True, progress=False).last_metrics["AP"]
    return train(r, progress=False).last_metrics["AP"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench-distill")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data", choices=["hard", "easy"], default="hard")
    parser.add_argument("--images", type=int, default=192, help="training images (default %(default)s)")
    parser.add_argument("--val-images", type=int, default=128, help="default %(default)s")
    parser.add_argument("--teacher-epochs", type=int, default=150)
    parser.add_argument("--student-epochs", type=int, default=60)
    parser.add_argument("--student", choices=sorted(STUDENTS), default="tiny")
    parser.add_argument("--method", nargs="+", default=["cwd", "logit"], metavar="METHOD[:WEIGHT]",
                        help="distillation methods to compare with the plain student, each with an "
                             f"optional loss weight (defaults: {DEFAULT_WEIGHTS})")
    # The saved weights are the EMA's; DAMO-YOLO's 0.9998 averages over ~5000 iterations, longer than
    # these whole runs, so it would score models from mid-training.
    parser.add_argument("--ema-decay", type=float, default=0.99)
    parser.add_argument("--jobs", type=int, default=2,
                        help="student runs trained at once, one thread each (small models use "
                             "two single-thread processes better than one two-thread one)")
    args = parser.parse_args()
    methods = [parse_method(m, parser) for m in args.method]
    # runs of other data or EMA settings are never resumed into these
    out = Path(args.out) / f"{args.data}-{args.images}-{args.val_images}-ema{args.ema_decay:g}"
    if args.data == "hard":
        data = make_synthetic_dataset(out / "data", images=args.images, val_images=args.val_images, size=128,
                                      classes=HARD_SHAPES, colour="random", scale=(0.08, 0.35), objects=(3, 10),
                                      seed=123)
    else:
        data = make_synthetic_dataset(out / "data", images=args.images, val_images=args.val_images, size=128,
                                      objects=(3, 8), seed=123)

    teacher_dir = out / f"teacher-e{args.teacher_epochs}"
    teacher_ap = run(recipe(data, teacher_dir, TEACHER_ARCH, "csp", [48, 96, 192], args.teacher_epochs, 0,
                            ema_decay=args.ema_decay))
    teacher_ckpt = str(teacher_dir / "best.pt")
    print(f"teacher (CSP, wide): AP {teacher_ap:.4f}", flush=True)
    docs = []
    arch, neck = STUDENTS[args.student]
    for seed in args.seeds:
        tag = f"e{args.student_epochs}-{seed}"  # runs of other schedules are never resumed into these
        docs.append(recipe(data, out / f"{args.student}-plain-{tag}", arch, "res", neck, args.student_epochs, seed,
                           ema_decay=args.ema_decay))
        for method, weight in methods:
            name = f"{args.student}-{method}-w{weight:g}-t{args.teacher_epochs}-{tag}"
            docs.append(recipe(data, out / name, arch, "res", neck, args.student_epochs, seed, teacher=teacher_ckpt,
                               method=method, weight=weight, ema_decay=args.ema_decay))
    threads = 1 if args.jobs > 1 else None
    aps = Parallel(n_jobs=args.jobs)(delayed(run)(doc, threads) for doc in docs)
    per_seed = len(methods) + 1
    plain = aps[0::per_seed]
    labels = [f"{method} {weight:g}" for method, weight in methods]
    for i, seed in enumerate(args.seeds):
        row = aps[i * per_seed:(i + 1) * per_seed]
        shown = ", ".join(f"{label} {ap:.4f} ({ap - row[0]:+.4f})" for label, ap in zip(labels, row[1:]))
        print(f"seed {seed}: plain student AP {row[0]:.4f}; distilled: {shown}")
    base = statistics.mean(plain)
    print(f"mean over seeds {args.seeds}: teacher {teacher_ap:.4f}, plain student {base:.4f}", flush=True)
    for k, label in enumerate(labels):
        mean = statistics.mean(aps[k + 1::per_seed])
        print(f"  distilled ({label}): {mean:.4f} ({mean - base:+.4f}, {mean / base:.3f}x the plain student)")


def parse_method(text: str, parser: argparse.ArgumentParser) -> tuple[str, float]:
    name, _, weight = text.partition(":")
    if name not in DEFAULT_WEIGHTS:
        parser.error(f"--method: unknown method {name!r} (known: {', '.join(DEFAULT_WEIGHTS)})")
    try:
        return name, float(weight) if weight else DEFAULT_WEIGHTS[name]
    except ValueError:
        parser.error(f"--method: weight of {name!r} is not a number: {weight!r}")


if __name__ == "__main__":
    main()
