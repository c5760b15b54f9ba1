"""``tinynas design``: budget + dataset -> searched, trained, distilled, exported, timed, reported."""

from __future__ import annotations

from ..errors import UserError
from .argtypes import old_spellings


def _numbers(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UserError("--teacher-factors", "", f"expected numbers separated by commas, got {text!r}") from None


def register(sub) -> None:
    p = sub.add_parser("design", help="from a latency budget and a dataset to a deployed detector, with a report",
                       description="Search backbones under a whole-detector latency budget (and larger teacher "
                                   "budgets), train the largest, distil down, export and time each model in the "
                                   "runtime, and write report.md and deploy/model.onnx. Rerun the same command "
                                   "to resume: finished stages are skipped.")
    p.add_argument("data", metavar="DATA", help="YAML with train_images, train_annotations, val_images, "
                                                "val_annotations (COCO JSON), or a train recipe with a data section")
    p.add_argument("--budget", required=True, metavar="latency=MS", help="the deployed detector's latency, e.g. latency=8ms, or latency=match:FILE.onnx: "
                        "the latency that model measures in --runtime (time it, then search at it)")
    p.add_argument("--runtime", default="onnxruntime", type=str.lower, help="runtime the model deploys in: onnxruntime, openvino, tensorrt or torch "
                                                       "(checked with its provider before the search starts)")
    old_spellings(p, p.add_argument("--latency-db", default="", metavar="TABLE",
                                    help="latency table measured in that runtime (default: the shipped one "
                                         "for the runtime)"), "--db")
    p.add_argument("--model", default="tinynas-n", help="model recipe giving the wrap, neck and head (default tinynas-n)")
    p.add_argument("--space", default="k1kx", help="search space (default k1kx)")
    p.add_argument("--teacher-factors", default="2,4", metavar="F,F",
                   help="teacher budgets as multiples of the budget (default 2,4)")
    p.add_argument("--backbone-budget", action="append", default=[], metavar="KIND=VALUE",
                   help="a further budget on the backbone, e.g. layers=25 (repeatable)")
    p.add_argument("--candidates", type=int, default=20000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--size", type=int, default=320)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--baselines", action="store_true", help="also train each distilled model without its teacher")
    p.add_argument("--timed-runs", type=int, default=30, help="timed runs per exported model")
    p.add_argument("--out", default="runs/design", help="design folder (default runs/design)")
    p.add_argument("--force", action="store_true", help="write into a non-empty folder that is not a design, or start over a "
                                                          "design folder with other settings (its results are deleted)")
    p.add_argument("--no-calibrate", action="store_true",
                   help="price with a table measured on another CPU as it is (by default it is first fitted to "
                        "this machine: `tinynas latency calibrate`)")
    p.add_argument("--init", nargs="+", default=[], metavar="PATH",
                   help="fine-tune: each model starts from the checkpoint of its own architecture (classes aside) "
                        "among these files, or the best.pt files under these folders (e.g. an earlier design on "
                        "other data); a model with none starts from scratch, said in the log")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_design)


def run_design(args) -> int:
    from ..api import DesignSpec, design

    spec = DesignSpec(data=args.data, budget=args.budget, runtime=args.runtime, latency_db=args.latency_db, model=args.model,
                      space=args.space, teacher_factors=_numbers(args.teacher_factors),
                      budgets=tuple(args.backbone_budget), candidates=args.candidates, seed=args.seed,
                      epochs=args.epochs, size=args.size, batch_size=args.batch_size, baselines=args.baselines,
                      timed_runs=args.timed_runs, init=tuple(args.init))
    result = design(spec, args.out, progress=not args.quiet, force=args.force, calibrate=not args.no_calibrate)
    print(f"report: {result.report}")
    if result.chosen is None:
        print("no model met the budget when measured; nothing deployed (see the report)")
    else:
        print(f"deployed: {result.out / 'deploy' / 'model.onnx'} ({result.chosen['model']}, "
              f"AP {result.chosen['AP']:.4f}, {result.chosen['measured_ms']:.2f} ms)")
    return 0
