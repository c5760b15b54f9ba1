"""Dataset problems, found before any training time is spent.

``check_dataset`` walks a COCO-JSON file and its image folder and returns every problem it
finds, each with the file it concerns, the image id and the reason. A problem is *fatal*
when training or evaluation would be wrong or would crash on it (missing or unreadable
images, a size that disagrees with the file, unknown ids, duplicate ids, malformed boxes);
the rest are warnings about things the loader repairs in a known way (boxes reaching
outside the image are clipped, boxes of zero or negative size are dropped, a missing
``iscrowd`` counts as 0).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..errors import UserError
from ..memory import exif_orientation, open_image, rgb_image, upright_size
from .coco import CocoDataset, read_coco_json

# Annotation tools round box edges; this much overhang is not worth a warning.
OUTSIDE_TOLERANCE = 1.0


@dataclass(frozen=True)
class Problem:
    file: str  # the image file the problem concerns, else the annotation file
    image_id: int | None
    reason: str
    fatal: bool

    def __str__(self) -> str:
        where = f"image {self.image_id}" if self.image_id is not None else "dataset"
        return f"{self.file}: {where}: {self.reason} [{'fatal' if self.fatal else 'warning'}]"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_dataset(annotations: str | os.PathLike, images_dir: str | os.PathLike, decode: bool = False,
                  progress: bool = False) -> list[Problem]:
    """Every problem of the dataset ``annotations`` + ``images_dir``, in file order.

    Raises ``UserError`` when the annotation file is unreadable or not COCO-shaped (no
    ``images``/``annotations``/``categories`` lists) or the image folder does not exist.

    Image files are opened to read their size (cheap); ``decode=True`` also decodes every
    pixel, which catches truncated files at the price of reading the whole dataset.
    """
    ann_file = str(annotations)
    images_dir = Path(images_dir)
    # An annotation file that is not COCO JSON at all, or a missing image folder, leaves
    # nothing to check item by item: those are plain user errors.
    data = read_coco_json(annotations)
    if not images_dir.is_dir():
        raise UserError(str(images_dir), "", "no such image folder")
    problems: list[Problem] = []

    def report(file: str, image_id, reason: str, fatal: bool) -> None:
        problems.append(Problem(file, image_id, reason, fatal))

    categories = _check_categories(data["categories"], ann_file, report)
    if not data["images"]:
        report(ann_file, None, "no images", True)
    sizes, paths = _check_images(data["images"], images_dir, ann_file, decode, progress, report)
    annotation_ids: set = set()
    boxed: set = set()  # category ids with at least one box
    for i, ann in enumerate(data["annotations"]):
        category = _check_annotation(i, ann, ann_file, categories, sizes, paths, annotation_ids, report)
        if category is not None:
            boxed.add(category)
    for cid in sorted(categories - boxed):
        report(ann_file, None, f"category {cid} has no usable box (the detector cannot learn it from this "
                               "set, and scores no AP for it)", False)
    return problems


def _check_categories(cats: list, ann_file: str, report) -> set:
    """The usable category ids; duplicate ids and names, and nameless categories, reported."""
    categories: set = set()
    category_names: dict = {}  # name -> the first category id of that name
    for i, cat in enumerate(cats):
        cid = cat.get("id") if isinstance(cat, dict) else None
        if not _is_int(cid):
            report(ann_file, None, f"categories[{i}]: missing or non-integer category id", True)
        elif cid in categories:
            report(ann_file, None, f"categories[{i}]: duplicate category id {cid}", True)
        else:
            categories.add(cid)
            name = cat.get("name")
            if not isinstance(name, str):
                report(ann_file, None, f"categories[{i}]: category {cid} has no name", False)
            elif name in category_names:
                report(ann_file, None, f"categories[{i}]: category {cid} has the name {name!r} of category "
                                       f"{category_names[name]} (predictions of the two cannot be told apart)", False)
            else:
                category_names[name] = cid
    if not cats:
        report(ann_file, None, "no categories", True)
    return categories


def _check_images(images: list, images_dir: Path, ann_file: str, decode: bool, progress: bool,
                  report) -> tuple[dict, dict]:
    """Image id -> recorded (width, height) when usable, and image id -> the path reports show."""
    sizes: dict = {}
    paths: dict = {}
    listed: dict = {}  # file name -> the first image id listing it
    for i, img in enumerate(tqdm(images, desc="images", unit="img", disable=None if progress else True)):
        if not isinstance(img, dict):
            report(ann_file, None, f"images[{i}]: expected an object", True)
            continue
        image_id = img.get("id")
        name = img.get("file_name")
        path = str(images_dir / name) if isinstance(name, str) else ann_file
        if not _is_int(image_id):
            report(path, None, f"images[{i}]: missing or non-integer image id", True)
            continue
        if image_id in paths:
            report(path, image_id, f"images[{i}]: duplicate image id (also {paths[image_id]})", True)
            continue
        paths[image_id] = path
        if not isinstance(name, str):
            report(ann_file, image_id, f"images[{i}]: missing file_name", True)
        elif name in listed:
            report(path, image_id, f"images[{i}]: the file is listed twice (also image {listed[name]}); "
                                   "it weighs double in training and evaluation", False)
        else:
            listed[name] = image_id
        width, height = img.get("width"), img.get("height")
        recorded_ok = _is_int(width) and _is_int(height) and width > 0 and height > 0
        if not recorded_ok:
            report(path, image_id, f"width/height missing or not positive integers ({width!r} x {height!r})", True)
        else:
            sizes[image_id] = (width, height)
        if isinstance(name, str):
            _check_image_file(images_dir / name, (width, height) if recorded_ok else None, decode, path, image_id,
                              report)
    return sizes, paths


def _check_image_file(file: Path, recorded, decode: bool, path: str, image_id, report) -> None:
    problem, orientation = _image_problem(file, recorded, decode)
    if problem:
        report(path, image_id, problem, True)
    elif orientation != 1:
        report(path, image_id, f"EXIF orientation {orientation}: the image is turned upright before use, "
                               "so its boxes must describe the upright image", False)


def _check_annotation(i: int, ann, ann_file: str, categories: set, sizes: dict, paths: dict, annotation_ids: set,
                      report):
    """Report what is wrong with ``annotations[i]``; its category id when it is a usable box."""
    if not isinstance(ann, dict):
        report(ann_file, None, f"annotations[{i}]: expected an object", True)
        return None
    image_id = ann.get("image_id")
    file = paths.get(image_id, ann_file) if _is_int(image_id) else ann_file
    aid = ann.get("id")
    label = f"annotation {aid}" if _is_int(aid) else f"annotations[{i}]"
    shown_id = image_id if _is_int(image_id) else None
    if not _is_int(aid):
        report(file, shown_id, f"annotations[{i}]: missing or non-integer annotation id", True)
    elif aid in annotation_ids:
        report(file, shown_id, f"{label}: duplicate annotation id", True)
    else:
        annotation_ids.add(aid)
    if not _is_int(image_id) or image_id not in paths:
        report(ann_file, shown_id, f"{label}: unknown image id {image_id!r}", True)
    category = ann.get("category_id")
    if not _is_int(category) or category not in categories:
        report(file, shown_id, f"{label}: unknown category id {category!r}", True)
    if "iscrowd" not in ann:
        report(file, shown_id, f"{label}: missing iscrowd (taken as 0)", False)
    elif ann["iscrowd"] not in (0, 1) or isinstance(ann["iscrowd"], bool):
        report(file, shown_id, f"{label}: iscrowd must be 0 or 1, got {ann['iscrowd']!r}", True)
    usable = _check_box(ann.get("bbox"), sizes.get(image_id) if _is_int(image_id) else None,
                        lambda reason, fatal: report(file, shown_id, f"{label}: {reason}", fatal))
    return category if usable and not ann.get("iscrowd") and _is_int(category) else None


def _check_box(bbox, size, report) -> bool:
    """False for a box training drops (malformed, empty, wholly outside); clipped ones are reported."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        report(f"bbox must be [x, y, width, height] numbers, got {bbox!r}", True)
        return False
    if not all(math.isfinite(v) for v in bbox):
        report(f"bbox must be finite numbers, got {bbox!r}", True)
        return False
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        report(f"box of zero or negative size ({w:g} x {h:g}), dropped", False)
        return False
    if size is not None:
        width, height = size
        t = OUTSIDE_TOLERANCE
        if x < -t or y < -t or x + w > width + t or y + h > height + t:
            fully_out = x >= width or y >= height or x + w <= 0 or y + h <= 0
            report(f"box [{x:g}, {y:g}, {w:g}, {h:g}] outside the image ({width} x {height}), "
                   f"{'dropped' if fully_out else 'clipped'}", False)
            return not fully_out
    return True


def _image_problem(path: Path, recorded: tuple[int, int] | None, decode: bool) -> tuple[str | None, int]:
    """Why an image file cannot be used as recorded (or None), and its EXIF orientation."""
    if not path.is_file():
        return "image file missing", 1
    try:
        with open_image(path) as image:
            stored, actual, orientation = image.size, upright_size(image), exif_orientation(image)
            if decode:
                image.load()
                rgb_image(image, str(path))  # what training decodes: bad float pixels show here
    except UserError as err:
        return err.reason, 1  # the path is reported beside it already
    if recorded is not None and tuple(actual) != tuple(recorded):
        turned = (f" after its EXIF orientation (stored {stored[0]} x {stored[1]}; the loader shows images "
                  "upright, so the boxes must be drawn on the upright image)") if stored != actual else ""
        return (f"image is {actual[0]} x {actual[1]}{turned} but the annotations say {recorded[0]} x "
                f"{recorded[1]}", orientation)
    return None, orientation


def fatal_problems(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.fatal]


def ensure_trainable(annotations: str | os.PathLike, images_dir: str | os.PathLike,
                     progress: bool = False) -> list[Problem]:
    """Refuse a dataset with fatal problems (a ``UserError`` naming the first one and the count);
    otherwise return its warnings."""
    problems = check_dataset(annotations, images_dir, progress=progress)
    fatal = fatal_problems(problems)
    if fatal:
        first = fatal[0]
        where = f"image {first.image_id}" if first.image_id is not None else ""
        more = f" (and {len(fatal) - 1} more fatal problems; run `tinynas data check`)" if len(fatal) > 1 else ""
        raise UserError(first.file, where, first.reason + more)
    return problems


def require_boxes(coco: CocoDataset, role: str) -> None:
    """Refuse a set in which no box is a target: training on it learns nothing (every image
    background), and evaluating on it scores -1 every time, so no best checkpoint is ever kept."""
    targets = sum(len(r.boxes) for r in coco.records)
    if targets:
        return
    source = str(coco.annotations)
    if not coco.annotation_count:
        raise UserError(source, "annotations", f"no annotations: the {role} set needs at least one box")
    crowd = sum(len(r.ignore) for r in coco.records)
    dropped = coco.annotation_count - crowd
    raise UserError(source, "annotations", f"no usable box in the {role} set: of its {coco.annotation_count} "
                    f"annotations, {crowd} are crowd regions (iscrowd 1) and {dropped} lie outside their image "
                    "or have no size (run `tinynas data check`)")


def print_warnings(problems: list[Problem], limit: int = 5, stream=None) -> None:
    """The first ``limit`` warnings of a check on stderr, and how many more there are."""
    import sys

    stream = sys.stderr if stream is None else stream
    warnings = [p for p in problems if not p.fatal]
    for problem in warnings[:limit]:
        print(problem, file=stream)
    if len(warnings) > limit:
        print(f"... and {len(warnings) - limit} more warnings (run `tinynas data check` for all)", file=stream)
