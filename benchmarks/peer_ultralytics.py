"""Run by ``real_data.py`` under the peer's Python (a venv with ultralytics): train an ultralytics
model from scratch on a YOLO-format split, then write its val detections as a COCO results file
so both tools are scored by the same evaluator (pycocotools, on the tinynas side).

    PEER/bin/python benchmarks/peer_ultralytics.py --model yolov8n.yaml --data D/data.yaml \
        --val-json D/annotations/val.json --val-images D/images/val --epochs 100 --imgsz 320 \
        --batch 16 --seed 0 --out runs/real-data/trees/yolov8n-s0

Everything the peer decides by itself (optimizer, lr, warm-up, augmentation, workers) is left at
its defaults: the comparison is with what its users get from ``yolo train``. Writes
``train_seconds.txt`` (wall time of ``train()``), ``meta.json`` (params, GFLOPs), ``results.json`` (from the run's best.pt)
and ``results_last.json`` (last.pt) into ``--out``; with ``--export-onnx`` also ``best.onnx``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

# No hub is reachable: keep ultralytics from trying (fonts, update checks, telemetry).
os.environ.setdefault("YOLO_OFFLINE", "1")


def detections(weights: Path, val_json: Path, val_images: Path, imgsz: int) -> list[dict]:
    from ultralytics import YOLO

    model = YOLO(str(weights))
    doc = json.loads(val_json.read_text())
    results = []
    for image in doc["images"]:
        pred = model.predict(str(val_images / image["file_name"]), imgsz=imgsz, conf=0.001, iou=0.7,
                             max_det=100, device="cpu", verbose=False)[0]
        boxes = pred.boxes
        for (x0, y0, x1, y1), score, cls in zip(boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist()):
            results.append({"image_id": image["id"], "category_id": doc["categories"][int(cls)]["id"],
                            "bbox": [x0, y0, x1 - x0, y1 - y0], "score": score})
    return results


def read_results_without_polars() -> None:
    """Where polars is not installed, read the trainer's results.csv with the csv module.

    ultralytics imports polars only to copy results.csv into each saved checkpoint; a GPU
    machine that cannot install it trains and scores the same way without it.
    """
    try:
        import polars  # noqa: F401
        return
    except ImportError:
        pass
    import csv

    from ultralytics.engine.trainer import BaseTrainer

    def read_results_csv(self):
        try:
            with open(self.csv, newline="") as handle:
                rows = list(csv.DictReader(handle))
        except OSError:
            return {}
        return {key.strip(): [float(r[key]) for r in rows] for key in (rows[0] if rows else {})}

    BaseTrainer.read_results_csv = read_results_csv


def export_untrained(model: str, data: Path, imgsz: int, out: Path) -> None:
    """``model`` built for ``data``'s classes, untrained, exported as ultralytics exports it:
    its latency is a dense network's, whatever the weights."""
    import tempfile

    import yaml
    from ultralytics import YOLO
    from ultralytics.nn.tasks import yaml_model_load

    names = yaml.safe_load(data.read_text())["names"]
    cfg = yaml_model_load(model)  # the package's yaml, its scale ("n") read from the name
    cfg["nc"] = len(names)
    folder = Path(tempfile.mkdtemp(prefix="peer-export-"))
    (folder / Path(model).name).write_text(yaml.safe_dump(cfg))
    exported = YOLO(str(folder / Path(model).name)).export(format="onnx", imgsz=imgsz, dynamic=False, simplify=False, half=False, device="cpu")
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(exported, out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--val-json", type=Path)
    parser.add_argument("--val-images", type=Path)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--imgsz", type=int, required=True)
    parser.add_argument("--batch", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--export-onnx", action="store_true",
                        help="also export best.pt to OUT/best.onnx at --imgsz (fp32, static shape, batch 1)")
    parser.add_argument("--export-untrained", type=Path, metavar="FILE.onnx",
                        help="only export the untrained model for --data's classes to FILE.onnx, and stop")
    parser.add_argument("--device", default="cpu", help="training device (cpu, 0 for the first GPU); "
                        "detections are always made on the CPU")
    args = parser.parse_args()
    if args.export_untrained:
        export_untrained(args.model, args.data, args.imgsz, args.export_untrained)
        return
    missing = [f"--{k.replace('_', '-')}" for k in ("val_json", "val_images", "epochs", "batch", "out")
               if getattr(args, k) is None]
    if missing:
        parser.error("training needs " + ", ".join(missing))
    read_results_without_polars()

    from ultralytics import YOLO, settings

    settings.update({"sync": False})
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "train_seconds.txt").is_file():  # a finished training is not redone
        started = time.perf_counter()
        YOLO(args.model).train(data=str(args.data), epochs=args.epochs, imgsz=args.imgsz, batch=args.batch,
                               seed=args.seed, device=args.device, project=str(out.parent), name=out.name,
                               exist_ok=True, pretrained=False, plots=False)
        (out / "train_seconds.txt").write_text(f"{time.perf_counter() - started:.1f}\n")
    # Costs of the trained model (the data's classes), as ultralytics reports them: at 640 px
    # (its model_info returns them only when it also prints them).
    _, params, _, gflops = YOLO(str(out / "weights" / "last.pt")).info(verbose=True)
    (out / "meta.json").write_text(json.dumps({"params": int(params), "gflops": float(gflops)}))
    for name, target in (("best.pt", "results.json"), ("last.pt", "results_last.json")):
        weights = out / "weights" / name
        if weights.is_file():
            (out / target).write_text(json.dumps(detections(weights, args.val_json, args.val_images, args.imgsz)))
    if args.export_onnx and not (out / "best.onnx").is_file():
        # Static 1x3xSxS and no simplifier: the graph ultralytics' own `yolo export format=onnx` gives.
        exported = YOLO(str(out / "weights" / "best.pt")).export(format="onnx", imgsz=args.imgsz, dynamic=False,
                                                                  simplify=False, half=False, device="cpu")
        os.replace(exported, out / "best.onnx")


if __name__ == "__main__":
    main()
