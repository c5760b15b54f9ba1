"""``tinynas design``: budget + dataset -> searched, trained, distilled, exported, timed, reported."""

from __future__ import annotations

from ..errors import UserError
from .settings_flags import Flag, add_settings, given_settings

# Every setting of DesignSpec has a flag; its help and default are the dataclass's.
FLAGS = (
    Flag("budget", metavar="latency=MS", text=True), Flag("runtime", text=True),
    Flag("latency_db", metavar="TABLE", old=("--db",), text=True), Flag("model", metavar="MODEL", text=True),
    Flag("space", metavar="SPACE", text=True), Flag("teacher_factors", metavar="F,F", text=True),
    Flag("budgets", spelling="--backbone-budget", metavar="KIND=VALUE", text=True, many="append"),
    Flag("candidates"), Flag("seed"), Flag("epochs"), Flag("size"), Flag("batch_size"), Flag("baselines"),
    Flag("baselines", spelling="--no-baselines", negate=True,
         help="never train a distilled model again without its teacher (baselines=false)"),
    Flag("timed_runs"), Flag("init", metavar="PATH", many="+"),
)


def register(sub) -> None:
    p = sub.add_parser("design", help="from a latency budget and a dataset to a deployed detector, with a report",
                       description="Search backbones under a whole-detector latency budget (and larger teacher "
                                   "budgets), train the largest, distil down, export and time each model in the "
                                   "runtime, and write report.md and deploy/model.onnx. Rerun the same command "
                                   "to resume: finished stages are skipped. Every setting is a flag or a "
                                   "KEY=VALUE (epochs=30 budget=latency=22ms).")
    p.add_argument("data", metavar="DATA", help="YAML with train_images, train_annotations, val_images, "
                                                "val_annotations (COCO JSON), or a train recipe with a data section")
    add_settings(p, _spec_class(), FLAGS, "epochs=30 teacher_factors=2,4")
    p.add_argument("--out", default="runs/design", help="design folder (default runs/design)")
    p.add_argument("--force", action="store_true", help="write into a non-empty folder that is not a design, or start over a "
                                                          "design folder with other settings (its results are deleted)")
    p.add_argument("--no-calibrate", action="store_true",
                   help="price with a table measured on another CPU as it is (by default it is first fitted to "
                        "this machine: `tinynas latency calibrate`)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_design)


def _spec_class():
    from ..api import DesignSpec

    return DesignSpec


def run_design(args) -> int:
    from ..api import design, design_spec

    settings = given_settings(args, FLAGS)
    if settings.origin("budget") is None:
        raise UserError("--budget", "", "missing: the deployed detector's latency, e.g. --budget latency=22ms")
    spec = design_spec(args.data, settings)
    result = design(spec, args.out, progress=not args.quiet, force=args.force, calibrate=not args.no_calibrate)
    print(f"report: {result.report}")
    if result.chosen is None:
        print("no model met the budget when measured; nothing deployed (see the report)")
    else:
        print(f"deployed: {result.out / 'deploy' / 'model.onnx'} ({result.chosen['model']}, "
              f"AP {result.chosen['AP']:.4f}, {result.chosen['measured_ms']:.2f} ms)")
    return 0
