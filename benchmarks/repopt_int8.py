"""RepOptimizer against the default training on real data: float AP, int8 PTQ AP, and the drop.

Per dataset (built as ``pareto.py`` builds them) and seed, the real-data benchmark's tinynas-n
recipe (``--epochs``, ``--size``, ``--batch``) is trained in these variants, only ``train.*``
differing:

- ``default``: the shipped defaults (optimizer auto, RepConv units as branches);
- ``sgd``: SGD (Nesterov) with branches, which separates RepOptimizer's optimizer from its form;
- ``hs``: RepOptimizer's hyper-search, the scaled form with trainable factors (optimizer auto);
- ``repopt-hs``: RepOptimizer (``train.rep_form=plain``; optimizer auto, AdamW on these runs) with
  the factors of the same seed's ``hs`` run;
- ``repopt-1``: RepOptimizer with every factor 1 (no hyper-search);
- ``repopt-sgd-1``: RepOptimizer on SGD, the paper's form, every factor 1;
- ``qat``: quantization-aware training of the same seed's ``default`` weights, ``--qat-epochs``
  at AdamW ``--qat-lr`` (per 64 images) without warm-up, its float self the teacher (CWD,
  ``distill.worth_margin=0``: a teacher equal to its student has no lead to weigh).

Each run's best weights are exported in float32 and quantized (``tinynas export --int8``, static
QDQ, ``--calib-images`` training images, per calibration method of ``--methods``), and every file is
scored by one evaluator (``tinynas predict`` on val, pycocotools, conf 0.001, IoU 0.7, 100
detections). All variants fuse into the same deploy graph, so their latency is one figure
(``int8_ptq.py`` measures it). Every training and export resumes; finished ones are read back.
``--reuse ROOT`` takes the default runs from an earlier real-data benchmark (``ROOT/<dataset>-*/
tinynas-n-sN``, the same recipe) instead of training them again.

    python benchmarks/repopt_int8.py --data runs/pareto/data --wheels runs/pareto/wheels \
        [--datasets trees nuclei] [--seeds 0 1 2] [--variants default hs repopt-hs repopt-1 sgd qat] \
        [--reuse runs/pareto] [--out runs/repopt-int8]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from int8_ptq import val_ap  # noqa: E402
from pareto import tinynas_train  # noqa: E402
from real_datasets import build  # noqa: E402

from tinynas.api import export_checkpoint, export_int8  # noqa: E402

VARIANTS = ("default", "sgd", "hs", "repopt-hs", "repopt-1", "repopt-sgd-1", "qat")
SECOND_WAVE = ("repopt-hs", "qat")  # they start from a first-wave run of the same seed


def variant_train(variant: str, root: Path, seed: int) -> dict:
    """The ``train`` keys a variant sets beyond the benchmark's own."""
    return {"default": {}, "sgd": {"optimizer": "sgd"}, "hs": {"rep_form": "scaled"},
            "repopt-hs": {"rep_form": "plain", "repopt_scales": str((root / f"hs-s{seed}" / "best.pt").resolve())},
            "repopt-1": {"rep_form": "plain"}, "repopt-sgd-1": {"rep_form": "plain", "optimizer": "sgd"},
            "qat": {}}[variant]


def train_variant(dataset, root: Path, variant: str, seed: int, args) -> None:
    folder = root / f"{variant}-s{seed}"
    if variant == "default" and args.reuse is not None and not (folder / "train_cpu.json").is_file():
        earlier = next(args.reuse.glob(f"{dataset.name}-*"), None)
        source = earlier / f"tinynas-n-s{seed}" if earlier is not None else None
        if source is not None and (source / "train_cpu.json").is_file():
            shutil.copytree(source, folder, dirs_exist_ok=True)
    train = {"epochs": args.epochs, "batch_size": args.batch, "seed": seed, "device": args.device,
             **variant_train(variant, root, seed)}
    sections = {"train": train}
    if variant == "qat":
        float_weights = str((root / f"default-s{seed}" / "best.pt").resolve())
        train.update(epochs=args.qat_epochs, optimizer="adamw", lr_per_64=args.qat_lr, warmup_epochs=0)
        sections.update(quant={"qat": True}, distill={"teacher": float_weights, "method": "cwd", "worth_margin": 0})
    tinynas_train(dataset, folder, "tinynas-n", seed, args, sections)


def train_dataset(dataset, root: Path, args) -> None:
    waves = [[v for v in args.variants if v not in SECOND_WAVE], [v for v in args.variants if v in SECOND_WAVE]]
    for wave in waves:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            jobs = [pool.submit(train_variant, dataset, root, v, s, args) for v in wave for s in args.seeds]
            for job in jobs:
                job.result()


def scored(folder: Path, method: str | None, paths: dict, args) -> float | None:
    checkpoint = folder / "best.pt"
    if not checkpoint.is_file():
        return None
    target = folder / "exports" / (f"int8-{method}.onnx" if method else "float32.onnx")
    if not target.is_file():
        target.parent.mkdir(exist_ok=True)
        if method is None:
            export_checkpoint(checkpoint, target)
        else:
            export_int8(checkpoint, target, calib=paths["train_images"], calib_images=args.calib_images,
                        calib_method=method)
    return val_ap(target, paths)


def report(dataset, root: Path, args) -> dict:
    paths = {"train_images": dataset.train_images, "val_images": dataset.val_images,
             "val_annotations": dataset.val_annotations}
    table = {}
    print(f"\n{dataset.name} (tinynas-n, {args.epochs} epochs, seeds {args.seeds}; AP on val; drop in AP points "
          f"from the variant's own float32; {args.calib_images} calibration images)")
    print("| variant | float32 AP | " + " | ".join(f"int8 {m} AP | drop" for m in args.methods) + " |")
    print("|---|---|" + "---|---|" * len(args.methods))
    for variant in args.variants:
        row = {}
        for method in (None, *args.methods):
            aps = [scored(root / f"{variant}-s{s}", method, paths, args) for s in args.seeds]
            row[method or "float32"] = [a for a in aps if a is not None]
        table[variant] = row
        if not row["float32"]:
            print(f"| {variant} | (not trained) |" + " | |" * len(args.methods))
            continue
        base = statistics.mean(row["float32"])
        cells = [f"{base:.4f} +- {statistics.pstdev(row['float32']):.4f} (n={len(row['float32'])})"]
        for method in args.methods:
            values = row[method]
            cells += [f"{statistics.mean(values):.4f} +- {statistics.pstdev(values):.4f}",
                      f"{(base - statistics.mean(values)) * 100:+.2f}"]
        print(f"| {variant} | " + " | ".join(cells) + " |")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["trees", "nuclei"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--methods", nargs="+", default=["minmax", "percentile"],
                        help="calibration methods (onnxruntime 1.32's entropy gives minmax's ranges)")
    parser.add_argument("--calib-images", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--qat-epochs", type=int, default=10)
    parser.add_argument("--qat-lr", type=float, default=0.0008, help="lr_per_64 of the qat variant (a tenth "
                                                                     "of the from-scratch auto value)")
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reuse", type=Path, default=None, help="an earlier real-data benchmark's folder")
    parser.add_argument("--data", type=Path, default=Path("runs/real-data/data"))
    parser.add_argument("--wheels", type=Path, default=Path("runs/real-data/wheels"))
    parser.add_argument("--out", type=Path, default=Path("runs/repopt-int8"))
    parser.add_argument("--phase", choices=("all", "train", "report"), default="all")
    args = parser.parse_args()
    datasets = {name: build(name, args.data, args.wheels) for name in args.datasets}
    if args.phase in ("all", "train"):
        for name, dataset in datasets.items():
            train_dataset(dataset, args.out / name, args)
    tables = {name: report(dataset, args.out / name, args) for name, dataset in datasets.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "repopt_int8.json").write_text(json.dumps(tables, indent=2) + "\n")
    print(f"\nwrote {args.out / 'repopt_int8.json'}")


if __name__ == "__main__":
    main()
