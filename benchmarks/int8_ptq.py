"""Post-training int8 against float32 on real data: AP on val and measured latency, side by side.

For each dataset (the real-data benchmark's sets, as ``pareto.py`` builds them) and each trained
checkpoint given by ``--runs`` (folders under ``--pareto``, e.g. ``tinynas-n-s0``), the float32
export and one int8 export per calibration method (``tinynas export --int8``, ``--calib-images``
drawn from the training images) are scored by one evaluator (``tinynas predict`` of the exported
file on val with its annotations, pycocotools, conf 0.001, IoU 0.7, 100 detections) and timed
side by side in onnxruntime (one thread, interleaved rounds, ``tinynas latency time``).
Resumable: every export, prediction and timing is read back when present.

    python benchmarks/int8_ptq.py --data runs/pareto/data --pareto runs/pareto \
        [--datasets trees nuclei] [--runs tinynas-n-s0 tinynas-n-s1 tinynas-n-s2] [--out runs/int8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tinynas.api import export_checkpoint, export_int8, predict_images, predictions_file, time_onnx_files  # noqa: E402

METHODS = ("minmax", "entropy", "percentile")


def data_paths(data: Path, name: str) -> dict[str, Path]:
    root = data / name
    return {"train_images": root / "images" / "train", "val_images": root / "images" / "val",
            "val_annotations": root / "annotations" / "val.json"}


def exported(checkpoint: Path, out: Path, method: str | None, paths: dict, calib_images: int) -> Path:
    target = out / (f"int8-{method}.onnx" if method else "float32.onnx")
    if not target.is_file():
        if method is None:
            export_checkpoint(checkpoint, target)
        else:
            export_int8(checkpoint, target, calib=paths["train_images"], calib_images=calib_images,
                        calib_method=method)
    return target


def val_ap(model: Path, paths: dict) -> float:
    from tinynas.train.coco_eval import coco_metrics

    folder = model.with_suffix("")
    results = predictions_file(folder)
    if not results.is_file():
        predict_images(model, paths["val_images"], folder, conf=0.001, iou=0.7, max_det=100, draw=False,
                       progress=False, force=True, annotations=paths["val_annotations"])
    return coco_metrics(paths["val_annotations"], json.loads(results.read_text()))["AP"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("runs/pareto/data"))
    parser.add_argument("--pareto", type=Path, default=Path("runs/pareto"))
    parser.add_argument("--datasets", nargs="+", default=["trees", "nuclei"])
    parser.add_argument("--runs", nargs="+", default=["tinynas-n-s0", "tinynas-n-s1", "tinynas-n-s2"])
    parser.add_argument("--calib-images", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--timed-runs", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("runs/int8"))
    args = parser.parse_args()
    table = {}
    for name in args.datasets:
        paths = data_paths(args.data, name)
        runs_root = next(args.pareto.glob(f"{name}-*"))
        aps: dict[str, list[float]] = {}
        timing_files = []
        for run in args.runs:
            out = args.out / name / run
            out.mkdir(parents=True, exist_ok=True)
            for method in (None, *METHODS):
                model = exported(runs_root / run / "best.pt", out, method, paths, args.calib_images)
                aps.setdefault(method or "float32", []).append(val_ap(model, paths))
                if run == args.runs[0]:
                    timing_files.append(model)
        timed = args.out / name / "timing.json"
        if not timed.is_file():
            time_onnx_files(timing_files, 320, threads=1, rounds=args.rounds, runs=args.timed_runs, out=timed)
        medians = {m["name"]: m["median_ms"] for m in json.loads(timed.read_text())["models"]}
        table[name] = {"AP": {k: {"mean": statistics.mean(v), "std": statistics.pstdev(v), "runs": v}
                              for k, v in aps.items()}, "median_ms": medians}
        print(f"\n{name} ({len(args.runs)} runs: {', '.join(args.runs)}; {args.calib_images} calibration images; "
              f"latency of {args.runs[0]}'s exports, 1 thread, {args.rounds} interleaved rounds)")
        print("| model | mean AP | std | AP drop (points) | median ms | x float32 speed |")
        print("|---|---|---|---|---|---|")
        base, base_ms = statistics.mean(aps["float32"]), medians["float32"]
        for key, values in aps.items():
            ms = medians[key if key == "float32" else f"int8-{key}"]
            print(f"| {key} | {statistics.mean(values):.4f} | {statistics.pstdev(values):.4f} | "
                  f"{(base - statistics.mean(values)) * 100:+.2f} | {ms:.2f} | {base_ms / ms:.2f} |")
    (args.out / "int8_ptq.json").write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
