"""``tinynas model info``, ``tinynas predict`` and ``tinynas export``: whole detectors."""

from __future__ import annotations

from .format import human, table
from .settings_flags import Flag, add_settings, given_settings, read_settings

_COMMON = (Flag("size"), Flag("conf"), Flag("iou"), Flag("max_det"))
PREDICT_FLAGS = (Flag("weights", metavar="CKPT", text=True), Flag("source", metavar="IMAGE_OR_DIR", text=True),
                 Flag("out", metavar="DIR", text=True), Flag("recipe", metavar="MODEL", text=True),
                 Flag("annotations", metavar="COCO_JSON", text=True), *_COMMON,
                 Flag("batch_size", old=("--batch",)),
                 Flag("draw", spelling="--no-draw", negate=True, help="only write the JSON (draw=false)"), Flag("force"))
INFO_FLAGS = (Flag("size"), Flag("unfused"))
EXPORT_FLAGS = (Flag("weights", metavar="CKPT", text=True), Flag("format"), Flag("out", metavar="FILE", text=True),
                *_COMMON, Flag("nms"), Flag("check"), Flag("check_image", metavar="IMAGE", text=True), Flag("force"),
                Flag("int8"), Flag("calib", metavar="DIR", text=True), Flag("calib_images"), Flag("calib_method"),
                Flag("activations"), Flag("keep_float", metavar="NODE", text=True, many="append"),
                Flag("keep_float_top", metavar="K"), Flag("val_images", metavar="DIR", text=True),
                Flag("val_annotations", metavar="COCO_JSON", text=True))


def register(sub) -> None:
    p = sub.add_parser("model", help="detector models built from recipes")
    model_sub = p.add_subparsers(dest="model_command", metavar="ACTION")
    model_sub.required = True
    info = model_sub.add_parser("info", help="params and GFLOPs of a detector, split into backbone / neck / head")
    info.add_argument("recipe", metavar="RECIPE", help="model recipe (.yaml) or shipped name (e.g. damoyolo-s)")
    add_settings(info, _settings("ModelInfoSettings"), INFO_FLAGS, "size=320 unfused=true")
    info.set_defaults(func=run_model_info)

    p = sub.add_parser("predict", help="detect objects in images; write drawn images and COCO-results JSON",
                       description="Every setting is a flag or a KEY=VALUE (conf=0.4 max_det=50).")
    add_settings(p, _settings("PredictSettings"), PREDICT_FLAGS, "conf=0.4 size=320")
    p.set_defaults(func=run_predict)

    p = sub.add_parser("export", help="re-parameterise a checkpoint and export it (ONNX)",
                       description="Every setting is a flag or a KEY=VALUE (nms=true conf=0.3).")
    add_settings(p, _settings("ExportSettings"), EXPORT_FLAGS, "nms=true conf=0.3")
    p.set_defaults(func=run_export)


def _settings(name: str) -> type:
    from .. import api

    return getattr(api, name)


def run_model_info(args) -> int:
    from ..api import format_bytes, model_info

    settings = read_settings(_settings("ModelInfoSettings"), given_settings(args, INFO_FLAGS), INFO_FLAGS)
    info = model_info(args.recipe, settings.size, fused=not settings.unfused)
    parts, recipe = info["parts"], info["recipe"]
    total = parts[-1]
    rows = [[p.name, human(p.params), f"{p.params / total.params:.0%}", f"{p.flops / 1e9:.2f}",
             f"{p.flops / total.flops:.0%}"] for p in parts]
    print(f"{recipe.name or args.recipe}: {info['description']}")
    print(table(["part", "params", "share", "GFLOPs", "share"], rows))
    form = "training form" if settings.unfused else "fused (deploy) form"
    print(f"{form}, {settings.size}x{settings.size} input, GFLOPs = 2 x conv/matmul MACs "
          "(torch FlopCounterMode; BatchNorm, activations, pooling not counted)")
    print(f"memory: ~{format_bytes(info['predict_bytes'])} to predict one image, ~{format_bytes(info['train_bytes'])} "
          "to train at batch 1 (float32; each image more adds activations)")
    return 0


def run_predict(args) -> int:
    from ..api import PredictSettings, predict_with, predictions_file, skipped_image_files

    settings = read_settings(PredictSettings, given_settings(args, PREDICT_FLAGS), PREDICT_FLAGS)
    results = predict_with(settings)
    boxes = sum(len(r.detections) for r in results)
    if not settings.annotations:
        skipped = skipped_image_files(settings.source)
        if skipped:
            shown = ", ".join(p.name for p in skipped[:3]) + (", ..." if len(skipped) > 3 else "")
            print(f"skipped {len(skipped)} file(s) not named as images: {shown}")
    print(f"{len(results)} image(s), {boxes} detection(s); wrote {predictions_file(settings.out)}")
    return 0


def run_export(args) -> int:
    import sys

    from ..api import ExportSettings, export_with

    settings = read_settings(ExportSettings, given_settings(args, EXPORT_FLAGS), EXPORT_FLAGS)
    if settings.int8:
        out, result, check = export_with(settings)
        print(f"wrote {out}: int8 ({result.quantized_nodes} tensors quantized; {result.method} ranges from "
              f"{result.images} images{'; kept float: ' + ', '.join(result.kept_float) if result.kept_float else ''})")
        print("int8 vs float on " + f"{check.images} calibration images: " + "; ".join(
            f"{name} max |diff| {check.max_abs[name]:.4g}, mean {check.mean_abs[name]:.4g}" for name in check.max_abs))
        if check.ap is not None:
            print(f"AP on val: float32 {check.ap['float32']:.4f}, int8 {check.ap['int8']:.4f} "
                  f"({(check.ap['int8'] - check.ap['float32']) * 100:+.2f} points)")
        return 0
    out, check = export_with(settings)
    print(f"wrote {out}")
    if check is None:
        return 0
    text = (f"onnxruntime vs torch on {check.input}: max relative difference {check.error:.2e} "
            f"(tolerance {check.tolerance:.0e})")
    if not check.passed:
        print(f"FAIL {text}", file=sys.stderr)
        return 1
    print(f"ok {text}")
    return 0
