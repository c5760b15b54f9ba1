"""How well a shipped table predicts this machine after ``tinynas latency calibrate``.

A copy of the table is calibrated on ``--calibrate-n`` reference detectors (seed
``--seed``), then ``--check-n`` *other* detectors (the same model around random backbones of
another seed) are timed end to end in the same run and predicted by the table as shipped and as
calibrated. Prints MAPE, max error and Kendall tau of both.

    .venv/bin/python benchmarks/calibrate_accuracy.py --latency-db cpu-ort-fp32-tinynas-n
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np

from tinynas.latency.machine_fit import calibrate_table, reference_detectors
from tinynas.latency.table import load_table, resolve_table_path, sidecar_path
from tinynas.latency.validate import error_metrics
from tinynas.latency.validate_models import validate_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-db", default="cpu-ort-fp32-tinynas-n")
    parser.add_argument("--calibrate-n", type=int, default=8)
    parser.add_argument("--check-n", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check-seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    source = resolve_table_path(args.latency_db)
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / source.name
        shutil.copy(source, copy)
        shutil.copy(sidecar_path(source), sidecar_path(copy))
        fit = calibrate_table(copy, n=args.calibrate_n, seed=args.seed, runs=args.runs, rounds=args.rounds,
                              progress=False)
        meta = load_table(copy).meta
        # The check set: other backbones (another seed), the recipe's own left out (it calibrated).
        recipes, size = reference_detectors(meta, None, None, None, args.check_n + 1, args.check_seed)
        check = validate_models(copy, recipes[1:], size, fit="none", runs=args.runs, rounds=args.rounds,
                                progress=False, at_table_speed=False)
    batch = load_table(source).batch
    shipped = meta.get("scale", 1.0) * check.raw_ms + meta.get("overhead_ms", 0.0) / batch
    calibrated = fit["scale"] * check.raw_ms + fit["overhead_ms"] / batch
    print(f"table {source.stem} (measured on {fit['table_device_name']}), this machine {fit['device_name']}")
    print(f"calibrated on {len(fit['models'])} detectors (seed {args.seed}): scale {fit['scale']:.3f}, "
          f"overhead {fit['overhead_ms']:.3f} ms")
    print(f"checked on {len(recipes) - 1} other detectors (seed {args.check_seed}) at {size} px, measured "
          f"{check.measured_ms.min():.2f}-{check.measured_ms.max():.2f} ms, {args.runs} runs in {args.rounds} rounds")
    for name, predicted in (("as shipped", shipped), ("calibrated", calibrated)):
        m = error_metrics(predicted, check.measured_ms)
        print(f"  {name:<11} MAPE {m['mape_pct']:5.1f}%  max {m['max_ape_pct']:5.1f}%  "
              f"within 10% {m['within_10pct']:5.1f}%  Kendall tau {m['kendall_tau']:.3f}")
    ratio = check.measured_ms / calibrated
    print(f"  measured / calibrated prediction: median {np.median(ratio):.3f}, range {ratio.min():.3f}-{ratio.max():.3f}")


if __name__ == "__main__":
    main()
