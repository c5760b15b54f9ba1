"""``tinynas data check|convert|synth``: look at, convert and generate detection datasets."""

from __future__ import annotations

import argparse

from .argtypes import positive_int

# tinynas.data pulls in torch: it is imported inside the commands so `tinynas --help` stays fast.


def _count_range(text: str) -> tuple[int, int]:
    parts = text.split(",")
    try:
        low, high = (int(parts[0]), int(parts[-1]))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX or N, got {text!r}") from None
    if len(parts) > 2 or not 1 <= low <= high:
        raise argparse.ArgumentTypeError(f"expected 1 <= MIN <= MAX, got {text!r}")
    return low, high


def _fraction_range(text: str) -> tuple[float, float]:
    parts = text.split(",")
    try:
        low, high = float(parts[0]), float(parts[-1])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX fractions, got {text!r}") from None
    if len(parts) > 2 or not 0 < low <= high < 1:
        raise argparse.ArgumentTypeError(f"expected 0 < MIN <= MAX < 1, got {text!r}")
    return low, high


def register(sub) -> None:
    data = sub.add_parser("data", help="check, convert or generate detection datasets (COCO JSON)")
    verbs = data.add_subparsers(dest="data_command", metavar="VERB")
    verbs.required = True

    p = verbs.add_parser("check", help="list problems of a COCO-JSON dataset (file, image id, reason)")
    p.add_argument("annotations", metavar="ANNOTATIONS", help="COCO-JSON annotation file")
    p.add_argument("--images", required=True, metavar="DIR", help="folder the file_name entries are relative to")
    p.add_argument("--decode", action="store_true", help="decode every image fully (catches truncated files; slower)")
    p.add_argument("--quiet", action="store_true", help="print only the summary line")
    p.set_defaults(func=run_check)

    p = verbs.add_parser("convert", help="convert Pascal-VOC XML or YOLO txt labels to one COCO-JSON file")
    p.add_argument("--from", dest="source_format", choices=["voc", "yolo"], required=True, help="label format")
    p.add_argument("source", metavar="SRC", help="folder of VOC .xml files, or of YOLO .txt label files")
    p.add_argument("--out", required=True, metavar="ANN_JSON", help="COCO-JSON file to write")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--images", metavar="DIR", help="image folder (required for yolo: sizes are read from the images)")
    p.add_argument("--classes", metavar="NAMES",
                   help="class names in label order: a,b,c or a file (one per line, or YAML with names); "
                        "required for yolo, optional for voc (default: sorted names found)")
    p.set_defaults(func=run_convert)

    p = verbs.add_parser("synth", help="generate a synthetic COCO dataset of coloured shapes",
                         description="Generate a synthetic COCO dataset of filled shapes on noisy backgrounds "
                                     "(shapes: rectangle, ellipse, triangle, diamond, cross, ring).")
    p.add_argument("out", metavar="OUT_DIR", help="folder to write images/{train,val} and annotations/{train,val}.json")
    p.add_argument("--images", type=positive_int, default=64, help="training images (default %(default)s)")
    p.add_argument("--val-images", type=int, default=16, help="validation images (default %(default)s)")
    p.add_argument("--size", type=positive_int, default=128, help="image side in pixels (default %(default)s)")
    p.add_argument("--classes", default=None,
                   help="shapes to use, comma separated (default: rectangle,ellipse,triangle)")
    p.add_argument("--objects", type=_count_range, default=(1, 4), metavar="MIN,MAX",
                   help="objects per image (default 1,4)")
    p.add_argument("--colour", choices=["class", "random"], default="class",
                   help="class: a base colour per class (easy); random: any colour, classes differ only "
                        "by shape (default %(default)s)")
    p.add_argument("--scale", type=_fraction_range, default=(0.15, 0.45), metavar="MIN,MAX",
                   help="object side as a fraction of the image side (default 0.15,0.45)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    p.add_argument("--force", action="store_true", help="write into OUT_DIR even if it holds files")
    p.set_defaults(func=run_synth)


def run_check(args) -> int:
    from ..api import check_dataset

    problems, fatal = check_dataset(args.annotations, args.images, decode=args.decode, progress=True)
    if not args.quiet:
        for problem in problems:
            print(problem)
    warnings = len(problems) - fatal
    if fatal:
        print(f"{args.annotations}: {fatal} fatal problem(s), {warnings} warning(s): not usable for training")
        return 1
    print(f"{args.annotations}: no fatal problems, {warnings} warning(s)")
    return 0


def run_convert(args) -> int:
    from ..api import convert_dataset

    data = convert_dataset(args.source_format, args.source, args.out, images=args.images, classes=args.classes,
                           force=args.force)
    names = ", ".join(c["name"] for c in data["categories"])
    print(f"wrote {args.out}: {len(data['images'])} images, {len(data['annotations'])} boxes, "
          f"{len(data['categories'])} classes ({names})")
    return 0


def run_synth(args) -> int:
    from ..api import make_synthetic_dataset, synthetic_classes

    text = args.classes if args.classes is not None else ",".join(synthetic_classes())
    classes = [c.strip() for c in text.split(",") if c.strip()]
    made = make_synthetic_dataset(args.out, images=args.images, val_images=args.val_images, size=args.size,
                                  classes=classes, objects=args.objects, seed=args.seed, progress=True,
                                  colour=args.colour, scale=args.scale, force=args.force)
    print(f"wrote {made.train_annotations} ({args.images} images in {made.train_images})")
    print(f"wrote {made.val_annotations} ({args.val_images} images in {made.val_images})")
    return 0
