"""``tinynas latency calibrate``: fit a table measured elsewhere to this machine."""

from __future__ import annotations

import argparse

from .settings_flags import Flag, add_settings, given_settings, read_settings

FLAGS = (Flag("latency_db", metavar="TABLE", text=True), Flag("model", metavar="RECIPE", text=True),
         Flag("space", metavar="SPACE", text=True), Flag("size"), Flag("n", spelling="-n"), Flag("seed"),
         Flag("runs"), Flag("rounds"),
         Flag("store", spelling="--no-store", negate=True, help="print the fit, leave the sidecar alone (store=false)"))


def _settings() -> type:
    from ..api import LatencyCalibrateSettings

    return LatencyCalibrateSettings

CALIBRATE_HELP = """\
Time a few reference detectors here, end to end in the table's runtime and thread count: the
table's model recipe around its own backbone and random backbones of its space, at its image
size (as the sidecar's builds name them; --model, --space and --size override). Fit measured =
scale x (sum of the table's ops) + overhead, print the error before and after (leave-one-out
too) and store the fit in the sidecar under this machine's name. Predictions on this machine
then use it; other machines keep theirs.
"""


def register(lsub) -> None:
    c = lsub.add_parser("calibrate", help="fit a table measured on another machine to this one (about a minute)",
                        description=CALIBRATE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_settings(c, _settings(), FLAGS, "n=5 runs=10")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=run_calibrate)


def run_calibrate(args) -> int:
    from ..api import calibrate_with, table_sidecar

    settings = read_settings(_settings(), given_settings(args, FLAGS), FLAGS)
    fit = calibrate_with(settings, progress=not args.quiet)
    before, after, loo = fit["before"], fit["after_in_sample"], fit["after_leave_one_out"]
    print(f"{len(fit['models'])} detectors at {fit['size']} px, timed on {fit['device_name']} (the table: "
          f"{fit['table_device_name']}), {fit['measured_ms'][0]:.2f}-{max(fit['measured_ms']):.2f} ms")
    print(f"table as it was:   MAPE {before['mape_pct']:.1f}%, max {before['max_ape_pct']:.1f}%, "
          f"Kendall tau {before['kendall_tau']:.3f}")
    print(f"fitted here:       MAPE {after['mape_pct']:.1f}% (leave-one-out {loo['mape_pct']:.1f}%), "
          f"scale {fit['scale']:.3f}, overhead {fit['overhead_ms']:.3f} ms")
    where = f"stored in {table_sidecar(settings.latency_db)} under {fit['device_name']!r}" if settings.store \
        else "not stored"
    print(where)
    return 0
