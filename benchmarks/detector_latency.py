"""Whole-detector latency: predicted from a table's convolutions against detectors timed end to end.

Twelve detectors: damoyolo-t, damoyolo-s, and ten built from backbones a ladder search finds on
the shipped onnxruntime table (k1kx, 25 layers, ten latency rungs), each wrapped with the
tinynas-n neck and head. Every convolution of the twelve (fused, at --size) is timed into a
table in the chosen runtime, then each detector is exported and timed end to end in the
same runtime, and the prediction (sum of its convolutions) is compared with the measurement:

    python benchmarks/detector_latency.py [--runtime onnxruntime] [--size 320] [--out runs/detector-latency]

Run it on a quiet machine: it times things.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tinynas.detect.model_recipe import load_model_recipe, parse_model_recipe  # noqa: E402
from tinynas.latency import build_table  # noqa: E402
from tinynas.latency.validate_models import validate_models  # noqa: E402
from tinynas.search import search  # noqa: E402

RUNGS = "latency=25ms,30ms,35ms,40ms,45ms,50ms,60ms,70ms,80ms,95ms"


def searched_detectors(out: Path, candidates: int) -> list:
    result = search("k1kx", ["layers=25"], ladder=RUNGS, latency=str(ROOT / "latency_db" / "cpu-ort-fp32.csv"),
                    candidates=candidates, population=64, seed=0, out=out / "search", exist_ok=True)
    template = yaml.safe_load((ROOT / "recipes" / "models" / "tinynas-n.yaml").read_text())
    recipes = []
    for i, rung in enumerate(result.rungs):
        doc = {**template, "name": f"searched-{rung.label.removeprefix('best-')}"}
        doc["backbone"] = {**template["backbone"], "arch": list(rung.best.arch.to_dicts())}
        recipes.append(parse_model_recipe(doc, f"rung {i}"))
    return recipes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runtime", default="onnxruntime")
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--candidates", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--out", default="runs/detector-latency")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    recipes = [load_model_recipe("damoyolo-t"), load_model_recipe("damoyolo-s")] + searched_detectors(out, args.candidates)
    table = out / f"detectors-{args.runtime}-{args.size}.csv"
    build_table([], table, runtime=args.runtime, models=recipes, model_size=args.size, progress=True)
    result = validate_models(table, recipes, args.size, runs=args.runs, rounds=5, runtime=args.runtime,
                             out_dir=out / "validate", force=True)
    print(f"{'model':28s} {'measured ms':>11s} {'sum of convs':>12s} {'error':>7s}")
    for name, measured, raw in zip(result.names, result.measured_ms, result.raw_ms):
        print(f"{name:28s} {measured:11.2f} {raw:12.2f} {(raw - measured) / measured * 100:+6.1f}%")
    for label, key in (("sum of convolutions", "raw"), ("fitted, leave-one-out", "fitted_leave_one_out")):
        e = result.metrics[key]
        print(f"{label}: MAPE {e['mape_pct']:.2f}%, max {e['max_ape_pct']:.2f}%, Kendall tau {e['kendall_tau']:.3f}")
    print(f"fit: scale {result.scale:.4f}, overhead {result.overhead_ms:.3f} ms per image; "
          f"{len(recipes)} detectors at {args.size}, {args.runtime}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
