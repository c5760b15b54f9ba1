"""``tinynas info``, ``tinynas score`` and ``tinynas convert``: one architecture at a time."""

from __future__ import annotations

from ..api import ConvertSettings, InfoSettings, ScoreSettings, arch_report, convert_arch, load_any_arch, score_with
from .format import human, table
from .settings_flags import Flag, add_settings, given_settings, read_settings


INFO_FLAGS = (Flag("resolution"), Flag("stage_weights", metavar="W,W,...", old=("--weights",), text=True))
SCORE_FLAGS = (Flag("method", text=True), *INFO_FLAGS, Flag("seed"), Flag("batch_size", old=("--batch",)),
               Flag("repeats"), Flag("stages"))
CONVERT_FLAGS = (Flag("family"), Flag("force"))


def register(sub) -> None:
    p = sub.add_parser("info", help="per-block table of sizes, MACs, params, layers, stages and the MAE score")
    p.add_argument("arch", metavar="ARCH", help="architecture file (.yaml/.json/.txt) or shipped name (e.g. damoyolo-s)")
    add_settings(p, InfoSettings, INFO_FLAGS, "resolution=640")
    p.set_defaults(func=run_info)

    p = sub.add_parser("score", help="zero-shot MAE score of an architecture")
    p.add_argument("arch", metavar="ARCH", help="architecture file or shipped name")
    add_settings(p, ScoreSettings, SCORE_FLAGS, "method=entropy stage_weights=0,0,1,1,16")
    p.set_defaults(func=run_score)

    p = sub.add_parser("convert", help="rewrite an architecture as YAML, JSON or DAMO-YOLO/TinyNAS structure text")
    p.add_argument("arch", metavar="ARCH", help="architecture file or shipped name")
    p.add_argument("out", metavar="OUT", help="output file; its suffix (.yaml/.json/.txt) picks the format")
    add_settings(p, ConvertSettings, CONVERT_FLAGS, "family=tinynas")
    p.set_defaults(func=run_convert)


def run_info(args) -> int:
    settings = read_settings(InfoSettings, given_settings(args, INFO_FLAGS), INFO_FLAGS)
    arch = load_any_arch(args.arch)
    report = arch_report(arch, settings.resolution, settings.stage_weights)
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
    print(f"input {arch.in_channels}x{settings.resolution}x{settings.resolution}: {human(t['macs'])} MACs "
          f"({human(2 * t['macs'])} FLOPs), {human(t['params'])} params "
          f"({human(t['params_fused'])} with BN folded), {t['layers']} layers")
    stages = ", ".join(f"{s:.2f}" for s in report["stage_scores"])
    weights = ",".join(f"{w:g}" for w in settings.stage_weights)
    print(f"MAE score (madnas, stage weights {weights}): {report['score']:.4f}  [stages: {stages}]")
    return 0


def run_score(args) -> int:
    settings = read_settings(ScoreSettings, given_settings(args, SCORE_FLAGS), SCORE_FLAGS)
    score, stages = score_with(args.arch, settings)
    print(f"{score:.6f}")
    if settings.stages:
        for i, (s, w) in enumerate(zip(stages, settings.stage_weights)):
            print(f"stage {i}: {s:.6f} x {w:g}")
    return 0


def run_convert(args) -> int:
    settings = read_settings(ConvertSettings, given_settings(args, CONVERT_FLAGS), CONVERT_FLAGS)
    convert_arch(args.arch, args.out, family=settings.family, force=settings.force)
    print(f"wrote {args.out}")
    return 0
