"""Dataset commands: ``data check``, ``data convert``, ``data synth``."""

from __future__ import annotations

import os
from typing import Sequence

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
