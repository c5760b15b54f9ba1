"""``tinynas quant sensitivity``: which convolutions of a detector int8 hurts most."""

from __future__ import annotations

import argparse

from .format import table
from .settings_flags import Flag, add_settings, given_settings, read_settings

SENSITIVITY_FLAGS = (Flag("weights", metavar="CKPT", text=True), Flag("calib", metavar="DIR", text=True),
                     Flag("calib_images"), Flag("calib_method"), Flag("activations"), Flag("size"),
                     Flag("out", metavar="DIR", text=True), Flag("top"), Flag("force"),
                     Flag("val_images", metavar="DIR", text=True), Flag("val_annotations", metavar="COCO_JSON", text=True),
                     Flag("ap_top"))

SENSITIVITY_HELP = """\
Quantize each convolution of the checkpoint's ONNX export alone (onnxruntime, the ranges
calibrated once on the calibration images) and compare the model's outputs with the float
model's on those images: MSE, SNR (dB) and cosine similarity of scores and boxes. The table
(sensitivity.csv) and the plot (sensitivity.png) rank the layers by the SNR of the output each
damages most, most sensitive first; `tinynas export --int8 keep_float_top=K` keeps the first K in float.
With --val-images and --val-annotations, the ap_top first layers are also scored on val: the AP with
that layer alone in int8, and its drop from the float export's AP (points)."""


def _settings() -> type:
    from ..api import QuantSensitivitySettings

    return QuantSensitivitySettings


def register(sub) -> None:
    p = sub.add_parser("quant", help="int8: which layers quantization hurts")
    verbs = p.add_subparsers(dest="quant_command", metavar="ACTION")
    verbs.required = True
    s = verbs.add_parser("sensitivity", help="each convolution quantized alone, ranked by the damage to the outputs",
                         description=SENSITIVITY_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_settings(s, _settings(), SENSITIVITY_FLAGS, "calib_images=16 top=5")
    s.add_argument("--quiet", action="store_true", help="no progress line")
    s.set_defaults(func=run_sensitivity)


def run_sensitivity(args) -> int:
    import sys

    from ..api import sensitivity_with

    settings = read_settings(_settings(), given_settings(args, SENSITIVITY_FLAGS), SENSITIVITY_FLAGS)

    def progress(done: int, total: int) -> None:
        if not args.quiet:
            print(f"\rlayer {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)

    rows, (csv_path, png_path) = sensitivity_with(settings, progress)
    outputs = list(rows[0].snr_db) if rows else []
    scored = any(r.ap is not None for r in rows)
    cells = [[rank, r.node, r.weight, f"{r.worst_snr_db:.1f}", *[f"{r.snr_db[o]:.1f}" for o in outputs],
              *[f"{r.cosine[o]:.5f}" for o in outputs],
              *([("" if r.ap is None else f"{r.ap:.4f}"), ("" if r.ap_drop is None else f"{r.ap_drop:+.2f}")]
                if scored else [])]
             for rank, r in enumerate(rows[:settings.top], 1)]
    print(table(["#", "node", "weight", "worst SNR dB", *[f"{o} SNR" for o in outputs],
                 *[f"{o} cosine" for o in outputs], *(["AP alone int8", "AP drop pts"] if scored else [])], cells))
    print(f"{len(rows)} convolutions; wrote {csv_path} and {png_path}")
    return 0
