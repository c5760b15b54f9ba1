"""``tinynas latency calibrate``: fit a table measured elsewhere to this machine."""

from __future__ import annotations

import argparse

from .argtypes import positive_int

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
    c.add_argument("--latency-db", required=True, metavar="TABLE", help="latency table path or shipped name")
    c.add_argument("--model", default=None, metavar="RECIPE",
                   help="detector recipe timed (default: the first the table was built for)")
    c.add_argument("--space", default=None, help="search space whose random backbones it wraps (default: the "
                                                 "table's)")
    c.add_argument("--size", type=positive_int, default=None, help="image side (default: the table's build size)")
    c.add_argument("-n", type=positive_int, default=8, help="detectors timed, the recipe's own included "
                                                           "(default %(default)s)")
    c.add_argument("--seed", type=int, default=0, help="seed of the random backbones (default %(default)s)")
    c.add_argument("--runs", type=positive_int, default=15, help="timed runs per detector (default %(default)s)")
    c.add_argument("--rounds", type=positive_int, default=3,
                   help="passes through the detectors the runs are spread over (default %(default)s)")
    c.add_argument("--no-store", action="store_true", help="print the fit, leave the sidecar alone")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=run_calibrate)


def run_calibrate(args) -> int:
    from ..api import calibrate_latency_table, table_sidecar

    fit = calibrate_latency_table(args.latency_db, model=args.model, space=args.space, size=args.size, n=args.n,
                                  seed=args.seed, runs=args.runs, rounds=args.rounds, store=not args.no_store,
                                  progress=not args.quiet)
    before, after, loo = fit["before"], fit["after_in_sample"], fit["after_leave_one_out"]
    print(f"{len(fit['models'])} detectors at {fit['size']} px, timed on {fit['device_name']} (the table: "
          f"{fit['table_device_name']}), {fit['measured_ms'][0]:.2f}-{max(fit['measured_ms']):.2f} ms")
    print(f"table as it was:   MAPE {before['mape_pct']:.1f}%, max {before['max_ape_pct']:.1f}%, "
          f"Kendall tau {before['kendall_tau']:.3f}")
    print(f"fitted here:       MAPE {after['mape_pct']:.1f}% (leave-one-out {loo['mape_pct']:.1f}%), "
          f"scale {fit['scale']:.3f}, overhead {fit['overhead_ms']:.3f} ms")
    where = f"stored in {table_sidecar(args.latency_db)} under {fit['device_name']!r}" if not args.no_store else "not stored"
    print(where)
    return 0
