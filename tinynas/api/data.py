"""Dataset commands: ``data check``, ``data convert``, ``data synth``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal, Sequence

from ..config import setting
from ..errors import UserError
from ..runfolder import check_new_file


def check_dataset(annotations: str | os.PathLike, images: str | os.PathLike, decode: bool = False,
                  progress: bool = True) -> tuple[list, int]:
    """``tinynas data check``: every problem found (printable, one line each) and how many of them
    make the set unusable for training."""
    from ..data.check import check_dataset as check
    from ..data.check import fatal_problems

    problems = check(annotations, images, decode=decode, progress=progress)
    return problems, len(fatal_problems(problems))


def convert_dataset(source_format: str, source: str | os.PathLike, out: str | os.PathLike,
                    images: str | os.PathLike | None = None, classes: Sequence[str] | None = None,
                    force: bool = False, progress: bool = True) -> dict:
    """``tinynas data convert``: YOLO txt labels (``images`` and ``classes`` required) or Pascal
    VOC XML as one COCO JSON file at ``out``; returns the COCO document."""
    from ..data.convert import voc_to_coco, yolo_to_coco

    check_new_file(out, "--out", force)
    if source_format == "yolo":
        if not images:
            raise UserError("--images", "", "required with --from yolo (image sizes are read from the images)")
        if not classes:
            raise UserError("--classes", "", "required with --from yolo (YOLO labels store only class numbers)")
        return yolo_to_coco(source, images, classes, out=out, progress=progress)
    return voc_to_coco(source, classes=classes, images_dir=images, out=out, progress=progress)


def synthetic_classes() -> tuple[str, ...]:
    """The shapes ``data synth`` draws when no classes are given."""
    from ..data.synthetic import DEFAULT_CLASSES

    return tuple(DEFAULT_CLASSES)


def make_synthetic_dataset(out: str | os.PathLike, **options):
    """``tinynas data synth``: a generated shapes dataset in COCO form (``data.synthetic``)."""
    from ..data.synthetic import make_synthetic_dataset as make

    return make(out, **options)


@dataclass(frozen=True)
class DataCheckSettings:
    """``tinynas data check``'s settings besides the ANNOTATIONS file it checks."""

    images: str = setting(help="folder the file_name entries are relative to")
    decode: bool = setting(False, help="decode every image fully (catches truncated files; slower)")
    quiet: bool = setting(False, help="print only the summary line")


@dataclass(frozen=True)
class DataConvertSettings:
    """``tinynas data convert``'s settings besides the SRC folder it reads."""

    source_format: Literal["voc", "yolo"] = setting(help="label format of SRC")
    out: str = setting(help="COCO-JSON file to write")
    force: bool = setting(False, help="replace out if it exists")
    images: str = setting("", help="image folder (required for yolo: sizes are read from the images)")
    classes: str = setting("", help="class names in label order: a,b,c or a file (one per line, or YAML with "
                                    "names); required for yolo, optional for voc (default: sorted names found)")


def convert_with(source: str | os.PathLike, settings: DataConvertSettings, progress: bool = True) -> dict:
    """``convert_dataset`` with the command's settings."""
    s = settings
    return convert_dataset(s.source_format, source, s.out, images=s.images or None, classes=s.classes or None,
                           force=s.force, progress=progress)


@dataclass(frozen=True)
class DataSynthSettings:
    """``tinynas data synth``'s settings besides the OUT_DIR it writes."""

    images: int = setting(64, bounds="[1, inf)", help="training images")
    val_images: int = setting(16, bounds="[0, inf)", help="validation images")
    size: int = setting(128, bounds="[1, inf)", unit="pixels", help="image side")
    classes: str = setting("", help="shapes to use, comma separated (default: rectangle,ellipse,triangle)")
    objects: tuple[int, ...] = setting((1, 4), bounds="[1, inf)", help="objects per image: MIN,MAX or N")
    colour: Literal["class", "random"] = setting(
        "class", help="class: a base colour per class (easy); random: any colour, classes differ only by shape")
    scale: tuple[float, ...] = setting((0.15, 0.45), bounds="(0, 1)",
                                       help="object side as a fraction of the image side: MIN,MAX")
    seed: int = setting(0, help="random seed")
    force: bool = setting(False, help="write into OUT_DIR even if it holds files")


def synth_with(out: str | os.PathLike, settings: DataSynthSettings, progress: bool = True):
    """``make_synthetic_dataset`` with the command's settings (one ``objects`` value N is N,N)."""
    s = settings
    if len(s.objects) > 2:
        raise UserError("objects", "", f"expected MIN,MAX or N, got {','.join(map(str, s.objects))}")
    if len(s.scale) != 2:
        raise UserError("scale", "", f"expected MIN,MAX, got {','.join(map(str, s.scale))}")
    text = s.classes or ",".join(synthetic_classes())
    classes = [c.strip() for c in text.split(",") if c.strip()]
    return make_synthetic_dataset(out, images=s.images, val_images=s.val_images, size=s.size, classes=classes,
                                  objects=(s.objects[0], s.objects[-1]), seed=s.seed, progress=progress,
                                  colour=s.colour, scale=s.scale, force=s.force)
