"""``tinynas train`` and ``tinynas eval``."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from ..errors import UserError
from .argtypes import positive_int
from .format import table

# Library imports live inside the commands: they pull in torch, and `tinynas --help` should not wait.


def register(sub) -> None:
    p = sub.add_parser("train", help="train (or distil) a detector on a COCO-format dataset",
                       description="Train a detector from a recipe; writes runs/<name>/ with last.pt, best.pt, "
                                   "metrics.csv, recipe.yaml and results.png. Runs under torchrun for several GPUs.")
    p.add_argument("recipe", metavar="RECIPE", nargs="?", help="training recipe (YAML)")
    p.add_argument("overrides", metavar="KEY=VALUE", nargs="*", help="recipe overrides, e.g. train.epochs=10")
    p.add_argument("--resume", metavar="RUN", help="continue the run in this folder from its last.pt")
    p.add_argument("--teacher", metavar="CKPT", help="distil from this trained teacher checkpoint")
    p.add_argument("--stop-after", type=int, metavar="N", help="stop this call after N more epochs (resumable)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_train)

    p = sub.add_parser("distill-chain", help="train L, then distil M from L, S from M (and T from S)",
                       description="Run a distillation chain file: each stage resumes when interrupted and is "
                                   "skipped when finished; ends with summary.md and summary.csv.")
    p.add_argument("chain", metavar="CHAIN", help="chain file (YAML), e.g. recipes/chains/synthetic-lms.yaml")
    p.add_argument("overrides", metavar="KEY=VALUE", nargs="*",
                   help="chain file settings, e.g. common.train.epochs=3 distill.loss_weight=auto out=runs/my-chain")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_distill_chain)

    p = sub.add_parser("eval", help="COCO mAP of a checkpoint on the recipe's val split")
    p.add_argument("recipe", metavar="RECIPE", help="training recipe (YAML) or a run folder")
    p.add_argument("overrides", metavar="KEY=VALUE", nargs="*", help="recipe overrides, e.g. data.size=320")
    p.add_argument("--weights", metavar="CKPT", help="checkpoint (default: the run folder's best.pt)")
    p.add_argument("--size", type=positive_int, default=None,
                   help="square input size (default: the size the checkpoint was trained at, else the recipe's "
                        "data.size; a data.size=N override counts as --size N)")
    p.set_defaults(func=run_eval)


def run_train(args) -> int:
    from ..api import is_training_run, load_train_recipe, resume_training, train_detector

    if args.resume:
        if args.recipe or args.overrides:
            raise UserError("--resume", "", "a resumed run uses its own recipe.yaml; give no recipe or overrides")
        if not is_training_run(args.resume):
            raise UserError(str(args.resume), "--resume", "not a training run folder (it has no recipe.yaml)")
        result = resume_training(args.resume, stop_after=args.stop_after, progress=not args.quiet,
                                 teacher=args.teacher)
    else:
        if not args.recipe:
            raise UserError("train", "RECIPE", "give a recipe, or --resume RUN")
        recipe, source = load_train_recipe(args.recipe, args.overrides)
        if args.teacher:
            recipe = replace(recipe, distill=replace(recipe.distill, teacher=args.teacher))
        result = train_detector(recipe, stop_after=args.stop_after, progress=not args.quiet, source=source)
    if not result.main_process:
        return 0
    ap = result.last_metrics.get("AP")
    tail = f", last val AP {ap:.4f}" if isinstance(ap, float) and not math.isnan(ap) else ""
    print(f"{result.run_dir}: {result.epochs_done} epochs done{tail}, best val AP {max(result.best_ap, 0.0):.4f}")
    return 0


def run_distill_chain(args) -> int:
    from ..api import run_distill_chain

    _, markdown, out = run_distill_chain(args.chain, args.overrides, progress=not args.quiet)
    print(markdown, end="")
    print(f"wrote {out / 'summary.md'} and {out / 'summary.csv'}")
    return 0


def run_eval(args) -> int:
    from ..api import evaluate_checkpoint, load_train_recipe

    recipe, source = load_train_recipe(args.recipe, args.overrides)
    weights = args.weights or (Path(args.recipe) / "best.pt" if Path(args.recipe).is_dir() else None)
    if weights is None:
        raise UserError(source, "--weights", "give the checkpoint to evaluate")
    size = args.size
    if size is None and any(o.split("=", 1)[0].strip() == "data.size" for o in args.overrides or []):
        size = recipe.data.size
    metrics = evaluate_checkpoint(recipe, weights, size, source)
    print(table(["AP", "AP50", "AP75", "APs", "APm", "APl"],
                [[f"{metrics[k]:.4f}" for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")]]))
    print()
    print(table(["P", "R", "F1", "at confidence"],  # IoU 0.5, where the mean F1 over classes peaks
                [[f"{metrics[k]:.4f}" for k in ("P", "R", "F1")] + [f"{metrics['conf_F1']:.3f}"]]))
    print()
    print(table(["class", "AP"], [[name, f"{ap:.4f}"] for name, ap in metrics["per_class"].items()]))
    return 0
