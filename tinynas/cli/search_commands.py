"""``tinynas search``: evolve a backbone under budgets, from a recipe, ``key=value`` settings and flags.

Every setting is a key of a search recipe (``population=64``); each ``--flag`` of a setting is
another spelling of its key, generated from the recipe's own description (so defaults and
help live in one place, ``tinynas/search/search_recipe.py``). A flag or ``key=value`` replaces the
recipe's value, and an error in one names it rather than the recipe file.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import get_args, get_type_hints

from ..api import SearchRecipe, resume_search, run_search as search_as_told, search_backends
from ..config import COMMAND_LINE, Override, Overrides, help_text, parse_override
from ..errors import UserError
from .argtypes import old_spellings
from .format import human

# Recipe keys that have a flag of their own (--blocks-per-child for blocks_per_child).
FLAG_KEYS = ("space", "ladder", "latency_db", "detector", "population", "candidates", "blocks_per_child", "seed",
             "score", "stage_weights", "resolution", "jobs", "batch_size", "checkpoint_every", "out")
# Flags whose value is taken as written (a path, a ladder), not as a YAML scalar.
TEXT_FLAGS = ("space", "ladder", "latency_db", "detector", "out")
METAVARS = {"space": "SPACE", "ladder": "KIND=V1,V2,...", "latency_db": "TABLE", "detector": "MODEL", "score": "NAME",
            "stage_weights": "W,W,...", "out": "RUN_DIR"}
# Former flag spellings, accepted for one release with a note.
OLD_FLAGS = {"stage_weights": ("--weights",)}
# Settings that only change speed or display, so they may differ on --resume.
RUNTIME_OPTIONS = ("jobs", "backend", "quiet")


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def register(sub) -> None:
    p = sub.add_parser(
        "search", help="evolutionary search of a backbone under latency/FLOPs/params/layers budgets",
        description="Evolve architectures of a search space under budgets (MAE-NAS style). Give a recipe YAML, "
                    "KEY=VALUE settings (population=64 seed=3) and flags; the command line overrides the recipe.")
    p.add_argument("recipe", metavar="RECIPE", nargs="?", help="search recipe YAML (e.g. recipes/search/damoyolo-s.yaml)")
    p.add_argument("overrides", metavar="KEY=VALUE", nargs="*",
                   help="recipe settings, e.g. population=64 candidates=2000 seed=3 stage_weights=0,0,1,1,6")
    p.add_argument("--budget", action="append", default=None, metavar="KIND=VALUE",
                   help="an upper limit, repeatable: latency=0.12ms, flops=3.5G, macs=1.7G, params=8M, layers=25")
    hints = get_type_hints(SearchRecipe)
    described = {f.name: f for f in fields(SearchRecipe)}
    for key in FLAG_KEYS:
        counts = hints[key] is int or int in get_args(hints[key])
        old_spellings(p, p.add_argument(_flag(key), dest=key, metavar=METAVARS.get(key, "N" if counts else "VALUE"),
                                        help=help_text(described[key])), *OLD_FLAGS.get(key, ()))
    p.add_argument("--backend", choices=search_backends(), default="loky", help="joblib backend (default %(default)s)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run saved in RUN_DIR")
    p.add_argument("--force", action="store_true",
                   help="write into an --out folder that already holds other files (never over a search)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_search)


def command_line_settings(args) -> tuple[str | None, Overrides]:
    """The recipe path and every setting given on the command line, flags included, in order."""
    recipe, texts = args.recipe, list(args.overrides or [])
    if recipe is not None and "=" in recipe and not Path(recipe).is_file():
        recipe, texts = None, [recipe, *texts]
    settings = Overrides.parse(texts, COMMAND_LINE)
    flags = []
    for key in FLAG_KEYS:
        text = getattr(args, key, None)
        if text is None:
            continue
        flag = _flag(key)
        flags.append(Override(key, text, flag) if key in TEXT_FLAGS else parse_override(f"{key}={text}", flag))
    # A flag comes after the KEY=VALUE settings: it is the more specific spelling.
    return recipe, settings + Overrides(tuple(flags))


def run_search(args) -> int:
    recipe_path, overrides = command_line_settings(args)
    if args.resume:
        given = [o.origin if o.origin != COMMAND_LINE else o.key for o in overrides.items if o.key != "jobs"]
        given += (["RECIPE"] if recipe_path else []) + (["--budget"] if args.budget else [])
        given += ["--force"] if args.force else []
        if given:
            raise UserError("--resume", given[0], "a resumed run keeps its stored settings; "
                            f"only {', '.join('--' + o for o in RUNTIME_OPTIONS)} may be given")
        _report(resume_search(args.resume, overrides, backend=args.backend, progress=not args.quiet))
        return 0
    _report(search_as_told(recipe_path, overrides, args.budget or [], backend=args.backend, progress=not args.quiet,
                           force=args.force))
    return 0


def _report(result) -> None:
    rate = result.candidates / result.seconds if result.seconds else float("nan")
    print(f"{result.candidates} candidates ({result.evaluated} distinct, {result.within_budget} within budget) "
          f"in {result.seconds:.1f} s, {rate:.0f} candidates/s; initial score {result.initial_score:.2f}")
    for rung in result.rungs:
        best = rung.best
        latency = f", {best.latency_ms:.4g} ms" if best.latency_ms is not None else ""
        print(f"{rung.label} [{', '.join(b.text for b in rung.budgets)}]: score {best.score:.2f}, "
              f"{human(2 * best.macs)} FLOPs, {human(best.params)} params, {best.layers} layers{latency}"
              f" -> {', '.join(str(result.out_dir / f) for f in rung.files)}")
    print(f"results in {result.out_dir}")
