"""``tinynas data check|convert|synth``: look at, convert and generate detection datasets."""

from __future__ import annotations

from .settings_flags import Flag, add_settings, given_settings, read_settings

# tinynas.data pulls in torch: it is imported inside the commands so `tinynas --help` stays fast.

CHECK_FLAGS = (Flag("images", metavar="DIR", text=True), Flag("decode"), Flag("quiet"))
CONVERT_FLAGS = (Flag("source_format", spelling="--from"), Flag("out", metavar="ANN_JSON", text=True), Flag("force"),
                 Flag("images", metavar="DIR", text=True), Flag("classes", metavar="NAMES", text=True))
SYNTH_FLAGS = (Flag("images"), Flag("val_images"), Flag("size"), Flag("classes", metavar="NAMES", text=True),
               Flag("objects", metavar="MIN,MAX"), Flag("colour"), Flag("scale", metavar="MIN,MAX"), Flag("seed"),
               Flag("force"))


def _settings(name: str) -> type:
    from .. import api

    return getattr(api, name)


def register(sub) -> None:
    data = sub.add_parser("data", help="check, convert or generate detection datasets (COCO JSON)")
    verbs = data.add_subparsers(dest="data_command", metavar="VERB")
    verbs.required = True

    p = verbs.add_parser("check", help="list problems of a COCO-JSON dataset (file, image id, reason)")
    p.add_argument("annotations", metavar="ANNOTATIONS", help="COCO-JSON annotation file")
    add_settings(p, _settings("DataCheckSettings"), CHECK_FLAGS, "images=data/val decode=true")
    p.set_defaults(func=run_check)

    p = verbs.add_parser("convert", help="convert Pascal-VOC XML or YOLO txt labels to one COCO-JSON file")
    p.add_argument("source", metavar="SRC", help="folder of VOC .xml files, or of YOLO .txt label files")
    add_settings(p, _settings("DataConvertSettings"), CONVERT_FLAGS, "source_format=yolo classes=a,b")
    p.set_defaults(func=run_convert)

    p = verbs.add_parser("synth", help="generate a synthetic COCO dataset of coloured shapes",
                         description="Generate a synthetic COCO dataset of filled shapes on noisy backgrounds "
                                     "(shapes: rectangle, ellipse, triangle, diamond, cross, ring).")
    p.add_argument("out", metavar="OUT_DIR", help="folder to write images/{train,val} and annotations/{train,val}.json")
    add_settings(p, _settings("DataSynthSettings"), SYNTH_FLAGS, "images=200 objects=2,6")
    p.set_defaults(func=run_synth)


def run_check(args) -> int:
    from ..api import check_dataset

    settings = read_settings(_settings("DataCheckSettings"), given_settings(args, CHECK_FLAGS), CHECK_FLAGS)
    problems, fatal = check_dataset(args.annotations, settings.images, decode=settings.decode, progress=True)
    if not settings.quiet:
        for problem in problems:
            print(problem)
    warnings = len(problems) - fatal
    if fatal:
        print(f"{args.annotations}: {fatal} fatal problem(s), {warnings} warning(s): not usable for training")
        return 1
    print(f"{args.annotations}: no fatal problems, {warnings} warning(s)")
    return 0


def run_convert(args) -> int:
    from ..api import convert_with

    settings = read_settings(_settings("DataConvertSettings"), given_settings(args, CONVERT_FLAGS), CONVERT_FLAGS)
    data = convert_with(args.source, settings)
    names = ", ".join(c["name"] for c in data["categories"])
    print(f"wrote {settings.out}: {len(data['images'])} images, {len(data['annotations'])} boxes, "
          f"{len(data['categories'])} classes ({names})")
    return 0


def run_synth(args) -> int:
    from ..api import synth_with

    settings = read_settings(_settings("DataSynthSettings"), given_settings(args, SYNTH_FLAGS), SYNTH_FLAGS)
    made = synth_with(args.out, settings)
    print(f"wrote {made.train_annotations} ({settings.images} images in {made.train_images})")
    print(f"wrote {made.val_annotations} ({settings.val_images} images in {made.val_images})")
    return 0
