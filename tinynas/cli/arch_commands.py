"""``tinynas info``, ``tinynas score`` and ``tinynas convert``: one architecture at a time."""

from __future__ import annotations

from ..api import (DEFAULT_STAGE_WEIGHTS, SCORER_NAMES, arch_report, convert_arch, load_any_arch,
                   parse_stage_weights, score_arch)
from .argtypes import old_spellings, positive_int
from .format import human, table

WEIGHTS_HELP = "stage weights, comma separated (default %(default)s)"
DEFAULT_WEIGHTS_TEXT = ",".join(f"{w:g}" for w in DEFAULT_STAGE_WEIGHTS)


def register(sub) -> None:
    p = sub.add_parser("info", help="per-block table of sizes, MACs, params, layers, stages and the MAE score")
    p.add_argument("arch", metavar="ARCH", help="architecture file (.yaml/.json/.txt) or shipped name (e.g. damoyolo-s)")
    p.add_argument("--resolution", type=positive_int, default=320, help="input size (default %(default)s)")
    old_spellings(p, p.add_argument("--stage-weights", default=DEFAULT_WEIGHTS_TEXT, help=WEIGHTS_HELP), "--weights")
    p.set_defaults(func=run_info)

    p = sub.add_parser("score", help="zero-shot MAE score of an architecture")
    p.add_argument("arch", metavar="ARCH", help="architecture file or shipped name")
    p.add_argument("--method", choices=SCORER_NAMES, default="madnas",
                   help="madnas: closed form (default); entropy: forward pass with Gaussian weights")
    p.add_argument("--resolution", type=positive_int, default=320, help="input size for entropy (default %(default)s)")
    old_spellings(p, p.add_argument("--stage-weights", default=DEFAULT_WEIGHTS_TEXT, help=WEIGHTS_HELP), "--weights")
    p.add_argument("--seed", type=int, default=0, help="random seed for entropy (default %(default)s)")
    old_spellings(p, p.add_argument("--batch-size", type=positive_int, default=8,
                                    help="images per draw for entropy (default %(default)s)"), "--batch")
    p.add_argument("--repeats", type=positive_int, default=1, help="draws averaged by entropy (default %(default)s)")
    p.add_argument("--stages", action="store_true", help="also print each stage's unweighted score")
    p.set_defaults(func=run_score)

    p = sub.add_parser("convert", help="rewrite an architecture as YAML, JSON or DAMO-YOLO/TinyNAS structure text")
    p.add_argument("arch", metavar="ARCH", help="architecture file or shipped name")
    p.add_argument("out", metavar="OUT", help="output file; its suffix (.yaml/.json/.txt) picks the format")
    p.add_argument("--family", choices=["damoyolo", "tinynas"], default=None,
                   help="class names to write (default: damoyolo for .txt, tinynas otherwise)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=run_convert)


def run_info(args) -> int:
    arch = load_any_arch(args.arch)
    report = arch_report(arch, args.resolution, parse_stage_weights(args.stage_weights))
    headers = ["#", "class", "in", "out", "s", "k", "L", "btn", "size", "MACs", "params", "layers", "stage", "log-std"]
    rows = []
    for r in report["blocks"]:
        rows.append([r["index"], r["class"], r["in"], r["out"], r["s"], r["k"], r["L"] or "-", r["btn"] or "-",
                     r["size"], human(r["macs"]), human(r["params"]), r["layers"],
                     r["stage"] if r["stage"] is not None else "", f"{r['log_std']:.3f}"])
    t = report["total"]
    rows.append(["", "total", "", "", "", "", "", "", t["size"], human(t["macs"]), human(t["params"]),
                 t["layers"], "", ""])
    print(table(headers, rows))
    print(f"input {arch.in_channels}x{args.resolution}x{args.resolution}: {human(t['macs'])} MACs "
          f"({human(2 * t['macs'])} FLOPs), {human(t['params'])} params "
          f"({human(t['params_fused'])} with BN folded), {t['layers']} layers")
    stages = ", ".join(f"{s:.2f}" for s in report["stage_scores"])
    print(f"MAE score (madnas, stage weights {args.stage_weights}): {report['score']:.4f}  [stages: {stages}]")
    return 0


def run_score(args) -> int:
    arch = load_any_arch(args.arch)
    weights = parse_stage_weights(args.stage_weights)
    options = {"weights": weights}
    if args.method == "entropy":
        options.update(resolution=args.resolution, batch=args.batch_size, repeats=args.repeats, seed=args.seed)
    score, stages = score_arch(arch, args.method, source=args.arch, **options)
    print(f"{score:.6f}")
    if args.stages:
        for i, (s, w) in enumerate(zip(stages, weights)):
            print(f"stage {i}: {s:.6f} x {w:g}")
    return 0


def run_convert(args) -> int:
    convert_arch(args.arch, args.out, family=args.family, force=args.force)
    print(f"wrote {args.out}")
    return 0
