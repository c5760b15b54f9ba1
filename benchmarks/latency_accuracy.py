"""Accuracy of a latency table: predicted vs measured over random architectures.

Runs ``tinynas.latency.validate_table`` (measures N random networks of a space end to end
on the table's device) and prints MAPE, max error, share within 10% and Kendall tau for
the raw sum of ops, the fit in sample and the fit leave-one-out. Also prints what the
imported V100 FP16 DAMO-YOLO table predicts for DAMO-YOLO T and S (batch 32, 320x320,
12-channel stem) next to the budgets their searches used.

Measurement is serial and wants a quiet machine: numbers taken while other jobs run are
noisier (the sidecar records the date, clock and threads of each run).

    .venv/bin/python benchmarks/latency_accuracy.py [--db cpu-fp32] [--space k1kx] [-n 50]
        [--no-update] [--out runs/latency-validate]
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import kendalltau

from tinynas.archio import load_arch
from tinynas.latency import load_predictor, load_table, validate_table
from tinynas.latency.table import read_meta, update_meta
from tinynas.resources import ARCH_DIR, resolve_space_path
from tinynas.space import load_space

DAMOYOLO_BUDGETS_S = {"damoyolo-t": 8e-5, "damoyolo-s": 12e-5}


def damoyolo_figures() -> None:
    predictor = load_predictor("v100-trt-fp16-damoyolo")
    for name, budget in DAMOYOLO_BUDGETS_S.items():
        arch = load_arch(ARCH_DIR / f"{name}.txt")
        arch = arch.with_block(0, arch.blocks[0].replace(in_channels=12))
        seconds = predictor.predict_ms(arch, 320) * 1e-3
        print(f"V100 TRT fp16 (DAMO-YOLO table), {name} backbone, batch 32, 12x320x320: "
              f"{seconds:.3e} s/image vs search budget {budget:.1e} ({(seconds / budget - 1) * 100:+.1f}%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="cpu-fp32")
    parser.add_argument("--space", default="k1kx")
    parser.add_argument("-n", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fit", default="affine", choices=["affine", "offset", "none"])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None, help="folder for measurements (resumable), report and plot")
    parser.add_argument("--no-update", action="store_true", help="leave the table's sidecar alone")
    parser.add_argument("--skip-measure", action="store_true", help="only print the V100 DAMO-YOLO figures")
    parser.add_argument("--repeat", action="store_true",
                        help="measure the same networks a second time and print how well two "
                             "measurements agree: the noise ceiling for any predictor")
    args = parser.parse_args()

    damoyolo_figures()
    if args.skip_measure:
        return
    space = load_space(resolve_space_path(args.space))
    result = validate_table(args.db, space, n=args.n, seed=args.seed, fit=args.fit, warmup=args.warmup,
                            runs=args.runs, out_dir=args.out, update=not args.no_update,
                            rounds=args.rounds)
    m = result.metrics
    print(f"{args.db} on {m['device_name']} ({m['threads']} thread(s), clock {m['clock']}), "
          f"{m['n']} random {space.name} archs at {m['resolution']}, measured "
          f"{m['measured_ms_range'][0]:.2f}-{m['measured_ms_range'][1]:.2f} ms/image, "
          f"median run-to-run spread (IQR) {m['median_relative_spread_pct']:.1f}%")
    for label, key in (("sum of ops", "raw"), ("fitted in sample", "fitted_in_sample"),
                       ("fitted leave-one-out", "fitted_leave_one_out")):
        e = m[key]
        print(f"  {label:22s} MAPE {e['mape_pct']:6.2f}%  max {e['max_ape_pct']:6.2f}%  "
              f"within 10% {e['within_10pct']:5.1f}%  Kendall tau {e['kendall_tau']:.3f}")
    print(f"  fit: scale {result.scale:.4f}, overhead {result.overhead_ms:.3f} ms per batch")
    if args.repeat:
        again = validate_table(args.db, space, n=args.n, seed=args.seed, fit=args.fit, warmup=args.warmup,
                               runs=args.runs, update=False, rounds=args.rounds)
        agreement = repeatability(result.measured_ms, again.measured_ms)
        print(f"  repeat measurement vs first: Kendall tau {agreement['kendall_tau']:.3f}, mean ratio "
              f"{agreement['mean_ratio']:.3f}, MAPE {agreement['mape_pct']:.2f}% "
              f"({agreement['mape_after_mean_ratio_pct']:.2f}% after dividing out the mean ratio)")
        print(f"  prediction vs repeat measurement (fit from the first): "
              f"Kendall tau {kendalltau(result.scale * again.raw_ms + result.overhead_ms / again.batch, again.measured_ms).statistic:.3f}")
        if not args.no_update:
            path = load_table(args.db).path
            validation = read_meta(path)["validation"]
            validation["repeatability"] = agreement
            update_meta(path, validation=validation)


def repeatability(first: np.ndarray, second: np.ndarray) -> dict:
    """How well two measurements of the same networks agree (second taken as reference)."""
    ratio = float(np.mean(first / second))
    return {"kendall_tau": float(kendalltau(first, second).statistic), "mean_ratio": ratio,
            "mape_pct": float(np.mean(np.abs(first - second) / second) * 100),
            "mape_after_mean_ratio_pct": float(np.mean(np.abs(first / ratio - second) / second) * 100)}


if __name__ == "__main__":
    main()
