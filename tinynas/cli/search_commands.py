"""``tinynas search``: evolve a backbone under budgets, from options or a recipe."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..scores import SCORERS, parse_weights
from ..search.budgets import merge_budgets, parse_budget, parse_ladder
from ..search.evolution import BACKENDS, resume, search
from ..search.recipe import DEFAULT_LATENCY_DB, load_recipe, recipe_space, resolve_latency_path
from .argtypes import positive_int
from .format import human

DEFAULTS = {"population": 256, "candidates": 10000, "blocks_per_child": 1, "seed": 0, "score": "madnas",
            "weights": "0,0,1,1,6", "resolution": None, "batch_size": 512, "checkpoint_every": 10000,
            "jobs": 1}
# Options that only change speed or display, so they may differ on --resume.
RUNTIME_OPTIONS = ("jobs", "backend", "quiet")


def register(sub) -> None:
    p = sub.add_parser(
        "search", help="evolutionary search of a backbone under latency/FLOPs/params/layers budgets",
        description="Evolve architectures of a search space under budgets (MAE-NAS style). Give the "
                    "options here, or a recipe YAML whose keys the options override.")
    p.add_argument("recipe", metavar="RECIPE", nargs="?", help="search recipe YAML (e.g. recipes/search/damoyolo-s.yaml)")
    p.add_argument("--space", help="search space: YAML file or shipped name (k1kx, kxkx, k1kxk1, k1dwk1)")
    p.add_argument("--budget", action="append", default=None, metavar="KIND=VALUE",
                   help="an upper limit, repeatable: latency=0.12ms, flops=3.5G, macs=1.7G, params=8M, layers=25")
    p.add_argument("--ladder", metavar="KIND=V1,V2,...",
                   help="one best architecture per limit from one shared search, e.g. latency=0.08ms,0.12ms,0.2ms")
    p.add_argument("--latency-db", dest="latency_db", metavar="TABLE",
                   help=f"latency table for latency budgets (default {DEFAULT_LATENCY_DB})")
    p.add_argument("--population", type=positive_int, metavar="N", help="population size (default 256)")
    p.add_argument("--candidates", type=positive_int, metavar="N", help="children to generate (default 10000)")
    p.add_argument("--blocks-per-child", dest="blocks_per_child", type=positive_int, metavar="N",
                   help="blocks mutated per child (default 1)")
    p.add_argument("--seed", type=int, metavar="N", help="random seed (default 0)")
    p.add_argument("--score", choices=sorted(SCORERS), help="zero-shot score (default madnas)")
    p.add_argument("--weights", metavar="W,W,...", help="stage weights, comma separated (default 0,0,1,1,6)")
    p.add_argument("--resolution", type=positive_int, metavar="N", help="input size (default: the space's)")
    p.add_argument("--jobs", type=positive_int, metavar="N", help="parallel workers; never changes the result (default 1)")
    p.add_argument("--backend", choices=BACKENDS, default="loky", help="joblib backend (default %(default)s)")
    p.add_argument("--batch-size", dest="batch_size", type=positive_int, metavar="N",
                   help="children generated per batch from one population state (default 512)")
    p.add_argument("--checkpoint-every", dest="checkpoint_every", type=positive_int, metavar="N",
                   help="candidates between checkpoints (default 10000)")
    p.add_argument("--out", metavar="RUN_DIR", help="run folder (default runs/<recipe or space name>, numbered if taken)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run saved in RUN_DIR")
    p.add_argument("--force", action="store_true",
                   help="write into an --out folder that already holds other files (never over a search)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_search)


def _free_folder(base: Path) -> Path:
    if not base.exists():
        return base
    n = 2
    while Path(f"{base}-{n}").exists():
        n += 1
    return Path(f"{base}-{n}")


def run_search(args) -> int:
    if args.resume:
        given = [name for name in ("recipe", "space", "budget", "ladder", "latency_db", "population",
                                   "candidates", "blocks_per_child", "seed", "score", "weights",
                                   "resolution", "batch_size", "checkpoint_every", "out")
                 if getattr(args, name) is not None] + (["force"] if args.force else [])
        if given:
            raise UserError("--resume", given[0].replace("_", "-"), "a resumed run keeps its stored settings; "
                            f"only {', '.join('--' + o for o in RUNTIME_OPTIONS)} may be given")
        result = resume(args.resume, jobs=args.jobs or 1, backend=args.backend, progress=not args.quiet)
        _report(result)
        return 0

    recipe = load_recipe(args.recipe) if args.recipe else {}
    options = {**DEFAULTS, **{k: v for k, v in recipe.items() if k in DEFAULTS}}
    for name in DEFAULTS:
        if getattr(args, name, None) is not None:
            options[name] = getattr(args, name)
    space = recipe_space(recipe, args.space)
    source = str(args.recipe) if args.recipe else ""
    if args.weights is not None:  # checked here so an error names the flag, not the recipe
        stages = len(space.initial.stage_ends())
        if len(parse_weights(args.weights, "", "--weights")) != stages:
            raise UserError("", "--weights", f"expected {stages} stage weights for {space.name}, got {args.weights!r}")
    if args.ladder is not None:
        parse_ladder(args.ladder, "", "--ladder")

    cli_budgets = [parse_budget(text, "", "--budget") for text in args.budget or []]
    recipe_budgets = list(recipe.get("budgets", ()))
    ladder = args.ladder or recipe.get("ladder")
    ladder_kind = ladder.split("=", 1)[0].strip().lower() if ladder else None
    if args.ladder:
        # A ladder given here replaces the recipe's budget of the same kind...
        recipe_budgets = [b for b in recipe_budgets if b.kind != ladder_kind]
    elif ladder and ladder_kind in {b.kind for b in cli_budgets}:
        # ...and a budget given here replaces the recipe's ladder of the same kind.
        ladder = ladder_kind = None
    budgets = merge_budgets(recipe_budgets + cli_budgets)
    latency_text = args.latency_db or recipe.get("latency_db")
    wants_latency = ladder_kind == "latency" or any(b.kind == "latency" for b in budgets)
    latency = None
    if wants_latency or latency_text:
        latency = resolve_latency_path(latency_text or DEFAULT_LATENCY_DB)
        if not latency.is_file():
            field = "--latency-db" if latency_text else "--latency-db (default)"
            raise UserError(str(latency), field, "latency table not found; build one with "
                            "`tinynas latency build`, or name an existing table with --latency-db")

    if args.out:
        out = Path(args.out)
    else:
        out = _free_folder(Path(recipe.get("out") or Path("runs") / (Path(args.recipe).stem if args.recipe else space.name)))

    result = search(space, budgets, ladder=ladder, latency=latency, population=options["population"],
                    candidates=options["candidates"], blocks_per_child=options["blocks_per_child"],
                    seed=options["seed"], score=options["score"], weights=options["weights"],
                    resolution=options["resolution"], jobs=options["jobs"], backend=args.backend,
                    batch_size=options["batch_size"], checkpoint_every=options["checkpoint_every"],
                    out=out, progress=not args.quiet, exist_ok=args.force, source=source)
    _report(result)
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
