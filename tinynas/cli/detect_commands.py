"""``tinynas model info``, ``tinynas predict`` and ``tinynas export``: whole detectors."""

from __future__ import annotations

import argparse

from .argtypes import old_spellings, positive_int
from .format import human, table


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def register(sub) -> None:
    p = sub.add_parser("model", help="detector models built from recipes")
    model_sub = p.add_subparsers(dest="model_command", metavar="ACTION")
    model_sub.required = True
    info = model_sub.add_parser("info", help="params and GFLOPs of a detector, split into backbone / neck / head")
    info.add_argument("recipe", metavar="RECIPE", help="model recipe (.yaml) or shipped name (e.g. damoyolo-s)")
    info.add_argument("--size", type=positive_int, default=640, help="square input size (default %(default)s)")
    info.add_argument("--unfused", action="store_true",
                      help="count the training form (RepConv branches, BatchNorms) instead of the deploy form")
    info.set_defaults(func=run_model_info)

    p = sub.add_parser("predict", help="detect objects in images; write drawn images and COCO-results JSON")
    p.add_argument("--weights", required=True, metavar="CKPT",
                   help="tinynas detector checkpoint, or a model exported by `tinynas export` (.onnx)")
    p.add_argument("--source", required=True, metavar="IMAGE_OR_DIR", help="an image or a folder of images")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--recipe", default=None, help="check the checkpoint against this recipe's class count")
    p.add_argument("--annotations", default=None, metavar="COCO_JSON",
                   help="a COCO file of the --source folder's images: predict the images it lists and write "
                        "its image and category ids (so pycocotools scores predictions.json as `eval` does)")
    p.add_argument("--size", type=positive_int, default=None,
                   help="letterbox size (default: the size the checkpoint was trained at, else 640; an export's own)")
    p.add_argument("--conf", type=fraction, default=0.25, help="score threshold (default %(default)s)")
    p.add_argument("--iou", type=fraction, default=0.7, help="NMS IoU threshold (default %(default)s)")
    p.add_argument("--max-det", type=positive_int, default=100, help="detections kept per image (default %(default)s)")
    old_spellings(p, p.add_argument("--batch-size", type=positive_int, default=8,
                                    help="images per forward pass (default %(default)s, eval's eval.batch_size: "
                                         "the same batches give the same scores)"), "--batch")
    p.add_argument("--no-draw", action="store_true", help="only write the JSON")
    p.add_argument("--force", action="store_true", help="replace output files that already exist")
    p.set_defaults(func=run_predict)

    p = sub.add_parser("export", help="re-parameterise a checkpoint and export it (ONNX)")
    p.add_argument("--weights", required=True, metavar="CKPT", help="tinynas detector checkpoint")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="export format (default %(default)s)")
    p.add_argument("--out", default=None, help="output file (default: the checkpoint name with .onnx)")
    p.add_argument("--size", type=positive_int, default=None,
                   help="square input size (default: the size the checkpoint was trained at, else 640)")
    p.add_argument("--nms", action="store_true", help="put multi-class NMS in the graph (output detections [K, 7])")
    p.add_argument("--conf", type=fraction, default=0.05, help="NMS score threshold (default %(default)s)")
    p.add_argument("--iou", type=fraction, default=0.7, help="NMS IoU threshold (default %(default)s)")
    p.add_argument("--max-det", type=positive_int, default=100, help="NMS boxes kept per class (default %(default)s)")
    p.add_argument("--check", action="store_true",
                   help="run the export in onnxruntime and compare with torch on a random image in [0, 1]; "
                        "exit 1 when they differ beyond the tolerance")
    p.add_argument("--check-image", metavar="IMAGE", default=None,
                   help="check (as --check) on this image, letterboxed as predict prepares it")
    p.add_argument("--force", action="store_true", help="replace the output file if it exists")
    p.set_defaults(func=run_export)


def run_model_info(args) -> int:
    from ..api import format_bytes, model_info

    info = model_info(args.recipe, args.size, fused=not args.unfused)
    parts, recipe = info["parts"], info["recipe"]
    total = parts[-1]
    rows = [[p.name, human(p.params), f"{p.params / total.params:.0%}", f"{p.flops / 1e9:.2f}",
             f"{p.flops / total.flops:.0%}"] for p in parts]
    print(f"{recipe.name or args.recipe}: {info['description']}")
    print(table(["part", "params", "share", "GFLOPs", "share"], rows))
    form = "training form" if args.unfused else "fused (deploy) form"
    print(f"{form}, {args.size}x{args.size} input, GFLOPs = 2 x conv/matmul MACs "
          "(torch FlopCounterMode; BatchNorm, activations, pooling not counted)")
    print(f"memory: ~{format_bytes(info['predict_bytes'])} to predict one image, ~{format_bytes(info['train_bytes'])} "
          "to train at batch 1 (float32; each image more adds activations)")
    return 0


def run_predict(args) -> int:
    from ..api import predict_images, predictions_file, skipped_image_files

    results = predict_images(args.weights, args.source, args.out, args.size, args.conf, args.iou, args.max_det,
                             draw=not args.no_draw, force=args.force, annotations=args.annotations,
                             batch_size=args.batch_size, recipe=args.recipe or None)
    boxes = sum(len(r.detections) for r in results)
    if args.annotations is None:
        skipped = skipped_image_files(args.source)
        if skipped:
            shown = ", ".join(p.name for p in skipped[:3]) + (", ..." if len(skipped) > 3 else "")
            print(f"skipped {len(skipped)} file(s) not named as images: {shown}")
    print(f"{len(results)} image(s), {boxes} detection(s); wrote {predictions_file(args.out)}")
    return 0


def run_export(args) -> int:
    import sys

    from ..api import export_checkpoint

    out, check = export_checkpoint(args.weights, args.out, args.size, nms=args.nms, conf_threshold=args.conf,
                                   iou_threshold=args.iou, max_detections=args.max_det, force=args.force,
                                   check=args.check, check_image=args.check_image)
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
