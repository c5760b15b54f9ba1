"""tinynas against ultralytics on real, small detection data, side by side in one run.

The data come from the package registries (see ``real_datasets.py``): ``trees`` (DeepForest's
NEON tree crowns: 43 train tiles of 400 px with 716 boxes, 13 val tiles from other places with
461) or ``nuclei`` (StarDist's fluorescence nuclei). Every model trains from scratch with the
same epochs, input size, batch and seed, each tool on its own defaults (tinynas: a recipe that
names only the model, the data and those four values). Every model is scored by the same
evaluator (pycocotools COCO AP@[.5:.95] on the val split, detections at conf 0.001, IoU 0.7,
at most 100 per image) from the weights each tool keeps as ``best.pt``; wall time is the
training call's, with each tool's own per-epoch validation.

    python benchmarks/real_data.py --peer-python /path/to/venv/bin/python \
        [--dataset trees] [--epochs 100] [--size 320] [--batch 16] [--seeds 0] \
        [--model tinynas-n] [--peer-model yolov8n.yaml yolo26n.yaml] \
        [--teacher damoyolo-t --distill-seeds 0 1 2]
    python benchmarks/real_data.py --combos all [--model tinynas-n] [--latency-table T.csv] [--latency-size 320]

``--combos`` trains the backbone of ``--model`` with each named neck / head / loss combination
(``COMBOS``) instead, every other setting equal, and prints one table: AP, AP50, params, GFLOPs
at 640 and the latency predicted for the fused detector's convolutions at ``--latency-size``,
from a table of exactly those ops measured on this machine first (or ``--latency-table``; a
searched-backbone table lacks the neck and head ops). Rep-PAN's transposed-conv upsamplers
are not table ops and are left out.

The peer's venv: ``python3 -m venv PEER && PEER/bin/pip install torch==2.14.1
torchvision==0.29.1 ultralytics==8.4.190``. Finished runs are read back, not retrained (delete
a run folder to redo it); an interrupted tinynas run resumes from its ``last.pt``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_datasets import build  # noqa: E402

from tinynas.checkpoint import load_detector  # noqa: E402
from tinynas.detect.conv_ops import detector_op_counts  # noqa: E402
from tinynas.detect.model_recipe import load_model_recipe  # noqa: E402
from tinynas.errors import UserError  # noqa: E402
from tinynas.latency import load_predictor  # noqa: E402
from tinynas.data.coco import CocoDataset  # noqa: E402
from tinynas.data.pipeline import DetectionDataset  # noqa: E402
from tinynas.detect.costs import recipe_costs  # noqa: E402
from tinynas.train.coco_eval import coco_metrics  # noqa: E402
from tinynas.train.evaluate import predict_split  # noqa: E402

PEER_SCRIPT = Path(__file__).resolve().parent / "peer_ultralytics.py"

# (neck, head, train) settings that --combos puts around the same backbone; an empty neck or
# head keeps the model's own. The neck's output widths stay the model's, so only the parts
# change. Heads with objectness score sigmoid(cls) x sigmoid(obj): a prior of 0.1 on each
# starts the score at DAMO-YOLO's 0.01 (tests/test_train_options.py says why it matters).
COMBOS = {
    "damo": ({}, {}, {}),
    "yolox": ({"type": "pafpn", "depth": 0.33}, {"type": "decoupled", "reg_max": 0},
              {"assigner": "simota", "cls_loss": "bce", "box_loss": "ciou", "dfl": False}),
    "yolov6": ({"type": "reppan", "depth": 0.33}, {"type": "effidehead", "reg_max": 0},
               {"assigner": "tal", "cls_loss": "vfl", "box_loss": "siou", "dfl": False}),
    "tood": ({}, {"type": "tood"}, {"assigner": "tal"}),
    "asff": ({"type": "asff", "depth": 0.33}, {}, {}),
    "asff_sim": ({"type": "asff_sim", "depth": 0.33}, {}, {}),
    "gsconv": ({"type": "gsconv", "depth": 0.33}, {"type": "effidehead"}, {"assigner": "tal", "cls_loss": "vfl"}),
}


def combo_model(model: str, combo: str, folder: Path) -> Path:
    """A model recipe file: ``model``'s backbone with the combination's neck and head."""
    neck, head, _ = COMBOS[combo]
    doc = load_model_recipe(model).to_dict()
    if neck:
        doc["neck"] = {"out_channels": doc["neck"]["out_channels"], **neck}
    if head:
        h = doc["head"]
        doc["head"] = {"num_classes": h["num_classes"], "reg_max": h["reg_max"], "strides": h["strides"], **head}
    doc["name"] = f"{doc['name'] or Path(model).stem}-{combo}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def tinynas_run(dataset, folder: Path, model: str, args, seed: int, teacher: str = "",
                train: dict | None = None) -> dict:
    """Train (or read back) one tinynas run; returns its row."""
    done = folder / "train_seconds.txt"
    if not done.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        recipe = {
            "name": folder.name, "out": str(folder), "model": model,
            "data": {"train_images": str(dataset.train_images), "train_annotations": str(dataset.train_annotations),
                     "val_images": str(dataset.val_images), "val_annotations": str(dataset.val_annotations),
                     "size": args.size},
            "train": {"epochs": args.epochs, "batch_size": args.batch, "seed": seed, **(train or {})},
        }
        if teacher:
            recipe["distill"] = {"teacher": teacher, "loss_weight": "auto"}
        recipe_path = folder.parent / f"{folder.name}.yaml"
        recipe_path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        command = [sys.executable, "-m", "tinynas", "train"]
        command += ["--resume", str(folder)] if (folder / "last.pt").is_file() else [str(recipe_path)]
        started = time.perf_counter()
        subprocess.run(command + ["--quiet"], check=True)
        done.write_text(f"{time.perf_counter() - started:.1f}\n")
    resolved = yaml.safe_load((folder / "recipe.yaml").read_text())
    from tinynas.detect.model_recipe import parse_model_recipe
    model_recipe = parse_model_recipe(resolved, str(folder / "recipe.yaml"))
    flops = recipe_costs(model_recipe, 640)[-1]
    row = {"model": f"tinynas {model}" + (" distilled" if teacher else ""), "seed": seed,
           "gflops": flops.flops / 1e9, "params_m": flops.params / 1e6,
           "seconds": float(done.read_text()), "folder": str(folder), "recipe": model_recipe}
    val = CocoDataset(dataset.val_annotations, dataset.val_images)
    for name, key in (("best.pt", ""), ("last.pt", "last_")):
        detector, _ = load_detector(folder / name, model_recipe)
        results = predict_split(detector, DetectionDataset(val, args.size), conf_threshold=0.001,
                                iou_threshold=0.7, max_detections=100)
        metrics = coco_metrics(dataset.val_annotations, results)
        row[key + "AP"], row[key + "AP50"] = metrics["AP"], metrics["AP50"]
    return row


def peer_run(dataset, folder: Path, model: str, args, seed: int) -> dict:
    if not (folder / "results.json").is_file():
        subprocess.run([args.peer_python, str(PEER_SCRIPT), "--model", model, "--data", str(dataset.yolo_yaml),
                        "--val-json", str(dataset.val_annotations), "--val-images", str(dataset.val_images),
                        "--epochs", str(args.epochs), "--imgsz", str(args.size), "--batch", str(args.batch),
                        "--seed", str(seed), "--out", str(folder)], check=True)
    meta = json.loads((folder / "meta.json").read_text())
    row = {"model": f"ultralytics {Path(model).stem}", "seed": seed, "gflops": meta["gflops"],
           "params_m": meta["params"] / 1e6, "seconds": float((folder / "train_seconds.txt").read_text()),
           "folder": str(folder)}
    for name, key in (("results.json", ""), ("results_last.json", "last_")):
        metrics = coco_metrics(dataset.val_annotations, json.loads((folder / name).read_text()))
        row[key + "AP"], row[key + "AP50"] = metrics["AP"], metrics["AP50"]
    return row


def print_table(rows: list[dict], reference: dict | None) -> None:
    head = "| model | seed | GFLOPs@640 | params | AP | AP50 | AP (last) | wall |"
    if reference:
        head += f" AP / {reference['model']} | wall / {reference['model']} |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        line = (f"| {r['model']} | {r['seed']} | {r['gflops']:.2f} | {r['params_m']:.2f} M | {r['AP']:.4f} | "
                f"{r['AP50']:.4f} | {r['last_AP']:.4f} | {r['seconds'] / 60:.1f} min |")
        if reference:
            ratio = r["AP"] / reference["AP"] if reference["AP"] > 0 else float("inf")
            line += f" {ratio:.2f}x | {r['seconds'] / reference['seconds']:.2f}x |"
        print(line)


def combos_table(recipes: list, args, base: Path) -> Path:
    """``--latency-table``, or a table of every convolution of ``recipes`` measured here
    (``args.latency_runtime``, resumable): a backbone table lacks the necks' and heads' ops."""
    if args.latency_table:
        return Path(args.latency_table)
    from tinynas.latency import build_table

    path = base / f"combos-{args.latency_runtime}-{args.latency_size}.csv"
    build_table([], path, runtime=args.latency_runtime, models=recipes, model_size=args.latency_size, progress=True)
    return path


def run_combos(dataset, base: Path, args) -> None:
    """Train ``args.model[0]``'s backbone with each of ``args.combos``; print one table."""
    model = args.model[0]
    rows = []
    for combo in args.combos:
        path = combo_model(model, combo, base / "combo-models")
        for seed in args.seeds:
            row = tinynas_run(dataset, base / f"{path.stem}-s{seed}", str(path), args, seed, train=COMBOS[combo][2])
            rows.append({**row, "combo": combo})
    table = combos_table([r["recipe"] for r in rows], args, base)
    predictor = load_predictor(table)
    print(f"\n{model}'s backbone, {args.dataset}, {args.epochs} epochs at {args.size}; latency: {table}")
    print(f"| combo | neck | head | assigner / cls / box / dfl | seed | AP | AP50 | params | GFLOPs@640 | "
          f"predicted ms @{args.latency_size} |")
    print("|" + "---|" * 10)
    for r in rows:
        recipe = r["recipe"]
        try:
            latency = f"{predictor.predict_ops_ms(detector_op_counts(recipe, args.latency_size)):.2f}"
        except UserError as err:  # a given table whose grid misses some of the detector's ops
            latency = f"n/a ({err.reason})"
        t = {"assigner": "alignota", "cls_loss": "qfl", "box_loss": "giou", "dfl": True, **COMBOS[r["combo"]][2]}
        losses = f"{t['assigner']} / {t['cls_loss']} / {t['box_loss']} / {'dfl' if t['dfl'] else 'no dfl'}"
        print(f"| {r['combo']} | {recipe.neck.type} | {recipe.head.type} (reg_max {recipe.head.reg_max}) | {losses} | "
              f"{r['seed']} | {r['AP']:.4f} | {r['AP50']:.4f} | {r['params_m']:.2f} M | {r['gflops']:.2f} | "
              f"{latency} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="trees", choices=("trees", "nuclei"))
    parser.add_argument("--out", type=Path, default=Path("runs/real-data"))
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--model", nargs="+", default=["tinynas-n"], help="tinynas model names or recipe paths")
    parser.add_argument("--peer-python", help="Python of a venv with ultralytics; without it, no peer runs")
    parser.add_argument("--peer-model", nargs="+", default=["yolov8n.yaml", "yolo26n.yaml"])
    parser.add_argument("--teacher", help="tinynas model trained as the teacher (seed 0) for distillation")
    parser.add_argument("--distill-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--combos", nargs="+", choices=[*COMBOS, "all"],
                        help="train --model's backbone with these neck/head/loss combinations (and nothing else)")
    parser.add_argument("--latency-table", help="a table with every op of the combinations' fused detectors; "
                        "default: measure one here (latency build --model) into the run folder")
    parser.add_argument("--latency-runtime", default="onnxruntime", help="runtime of that measured table")
    parser.add_argument("--latency-size", type=int, default=320, help="the image size to price at")
    args = parser.parse_args()
    if args.combos and "all" in args.combos:
        args.combos = list(COMBOS)

    dataset = build(args.dataset, args.out / "data", args.out / "wheels")
    print(dataset.summary(), flush=True)
    base = args.out / f"{args.dataset}-{args.size}-e{args.epochs}-b{args.batch}"
    if args.combos:
        run_combos(dataset, base, args)
        return
    rows = []
    if args.peer_python:
        for model in args.peer_model:
            for seed in args.seeds:
                rows.append(peer_run(dataset, base / f"{Path(model).stem}-s{seed}", model, args, seed))
    for model in args.model:
        for seed in args.seeds:
            rows.append(tinynas_run(dataset, base / f"{Path(model).stem}-s{seed}", model, args, seed))
    reference = next((r for r in rows if "yolov8n" in r["model"]), None)
    print_table(rows, reference)

    if args.teacher:
        teacher = tinynas_run(dataset, base / f"teacher-{Path(args.teacher).stem}-s0", args.teacher, args, 0)
        student = args.model[0]
        plain, distilled = [], []
        for seed in args.distill_seeds:
            plain.append(tinynas_run(dataset, base / f"{Path(student).stem}-s{seed}", student, args, seed))
            distilled.append(tinynas_run(dataset, base / f"{Path(student).stem}-from-{Path(args.teacher).stem}-s{seed}",
                                         student, args, seed, teacher=str(Path(teacher["folder"]) / "best.pt")))
        print()
        print_table([teacher, *plain, *distilled], None)
        mean_plain = statistics.mean(r["AP"] for r in plain)
        mean_distilled = statistics.mean(r["AP"] for r in distilled)
        print(f"\ndistillation (loss_weight auto) over seeds {args.distill_seeds}: plain AP {mean_plain:.4f}, "
              f"distilled {mean_distilled:.4f}, gain {100 * (mean_distilled - mean_plain):+.2f} AP points")


if __name__ == "__main__":
    main()
