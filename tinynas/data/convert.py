"""Pascal-VOC XML and YOLO txt labels -> one COCO-JSON annotation file.

Conventions (stated once, because off-by-one here shifts every box):

- VOC ``bndbox`` corners are 1-based and inclusive (the devkit's convention), so
  ``x = xmin - 1``, ``width = xmax - xmin + 1`` in COCO's 0-based continuous pixels.
  VOC ``difficult`` objects become ``iscrowd: 1``: ignored by training and matched without
  penalty by COCO evaluation, which is how VOC's own metric treats them.
- YOLO lines are ``class cx cy w h`` with class 0-based and the rest normalised by the
  image size, which is read from the image file.
- Category ids are ``1..K`` in the order of the class list; images and annotations are
  numbered from 1 in sorted file order.
"""

from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from ..atomic import atomic_write_text
from ..errors import UserError
from ..memory import IMAGE_SUFFIXES, image_size
from ..fileio import parse_yaml, read_text



def load_class_names(text: str | Sequence[str]) -> list[str]:
    """Class names from a list, a comma-separated string, or a file: ``.yaml``/``.yml`` with
    ``names`` (a list, or a mapping index -> name), else one name per line."""
    if not isinstance(text, str):
        names = [str(n).strip() for n in text]
        source = "classes"
    elif Path(text).is_file():
        source = text
        path = Path(text)
        content = read_text(path, "class names file")
        if path.suffix in (".yaml", ".yml"):
            data = parse_yaml(content, source)
            raw = data.get("names") if isinstance(data, dict) else data
            if isinstance(raw, dict):
                try:
                    raw = [raw[k] for k in sorted(raw, key=int)]
                except (TypeError, ValueError):
                    raise UserError(source, "names", "mapping keys must be class indices") from None
            if not isinstance(raw, list):
                raise UserError(source, "names", "expected a list of class names")
            names = [str(n).strip() for n in raw]
        else:
            names = [line.strip() for line in content.splitlines() if line.strip()]
    else:
        source = "--classes"
        names = [n.strip() for n in text.split(",")]
    if not names or any(not n for n in names):
        raise UserError(source, "classes", "expected non-empty class names")
    if len(set(names)) != len(names):
        raise UserError(source, "classes", "duplicate class names")
    return names


def _coco(images: list[dict], annotations: list[dict], names: Sequence[str]) -> dict:
    return {
        "info": {"description": "converted by tinynas data convert"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": name, "supercategory": "object"} for i, name in enumerate(names)],
    }


def _annotation(ann_id: int, image_id: int, category_id: int, x: float, y: float, w: float, h: float,
                crowd: bool = False) -> dict:
    return {"id": ann_id, "image_id": image_id, "category_id": category_id,
            "bbox": [round(x, 4), round(y, 4), round(w, 4), round(h, 4)],
            "area": round(w * h, 4), "iscrowd": int(crowd)}


def write_coco(data: dict, out: str | os.PathLike) -> None:
    # Every number was checked finite on the way in; a NaN here is a bug, not a file to write.
    atomic_write_text(out, json.dumps(data, indent=1, allow_nan=False) + "\n")


# ---------------------------------------------------------------- VOC

def _text(node: ET.Element, path: str, source: str) -> str:
    found = node.find(path)
    if found is None or found.text is None or not found.text.strip():
        raise UserError(source, path, "missing")
    return found.text.strip()


def _float(node: ET.Element, path: str, source: str) -> float:
    text = _text(node, path, source)
    try:
        value = float(text)
    except ValueError:
        raise UserError(source, path, f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise UserError(source, path, f"expected a finite number, got {text!r}")
    return value


def _parse_voc(file: Path, images_dir) -> tuple:
    """(file name, width, height, objects, source) of one VOC XML; objects as (name, x, y, w, h,
    crowd) in COCO's 0-based pixels (VOC's are 1-based and inclusive)."""
    source = str(file)
    try:
        root = ET.parse(file).getroot()
    except ET.ParseError as err:
        raise UserError(source, f"line {err.position[0]}", "malformed XML") from None
    file_name = _text(root, "filename", source)
    size = root.find("size")
    if size is not None and size.find("width") is not None:
        width, height = int(_float(size, "width", source)), int(_float(size, "height", source))
    elif images_dir is not None:
        width, height = _image_size(Path(images_dir) / file_name, source)
    else:
        raise UserError(source, "size", "missing (pass the images folder to read it from the image)")
    if width <= 0 or height <= 0:
        raise UserError(source, "size", f"width and height must be positive, got {width} x {height}")
    objects = []
    for k, obj in enumerate(root.findall("object")):
        name = _text(obj, "name", source)
        box = obj.find("bndbox")
        if box is None:
            raise UserError(source, f"object[{k}].bndbox", "missing")
        xmin, ymin, xmax, ymax = (_float(box, key, f"{source}: object[{k}]") for key in ("xmin", "ymin", "xmax", "ymax"))
        if xmax < xmin or ymax < ymin:
            raise UserError(source, f"object[{k}].bndbox", f"xmax/ymax below xmin/ymin ({xmin:g}, {ymin:g}, "
                                                           f"{xmax:g}, {ymax:g})")
        difficult = obj.find("difficult")
        crowd = difficult is not None and (difficult.text or "0").strip() not in ("0", "")
        objects.append((name, xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1, crowd))
    return file_name, width, height, objects, source


def voc_to_coco(xml_dir: str | os.PathLike, classes: str | Sequence[str] | None = None,
                images_dir: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
                progress: bool = False) -> dict:
    """Every ``*.xml`` in ``xml_dir`` -> a COCO dict (written to ``out`` when given).

    ``classes`` fixes the label order (names not in it are an error); without it the sorted
    set of names found is used. ``images_dir`` is read only for XMLs without a ``size``.
    """
    xml_dir = Path(xml_dir)
    if not xml_dir.is_dir():
        raise UserError(str(xml_dir), "", "not a folder of VOC XML files")
    files = sorted(xml_dir.glob("*.xml"))
    if not files:
        raise UserError(str(xml_dir), "", "no .xml files")
    parsed = [_parse_voc(file, images_dir)
              for file in tqdm(files, desc="xml", unit="file", disable=None if progress else True)]

    if classes is None:
        names = sorted({obj[0] for *_, objects, _ in parsed for obj in objects} if parsed else set())
        if not names:
            raise UserError(str(xml_dir), "object", "no objects in any file, and no class list given")
    else:
        names = load_class_names(classes)
    category_of = {name: i + 1 for i, name in enumerate(names)}

    images, annotations = [], []
    for image_id, (file_name, width, height, objects, source) in enumerate(parsed, start=1):
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for k, (name, x, y, w, h, crowd) in enumerate(objects):
            if name not in category_of:
                raise UserError(source, f"object[{k}].name", f"class {name!r} not in the class list")
            annotations.append(_annotation(len(annotations) + 1, image_id, category_of[name], x, y, w, h, crowd))
    data = _coco(images, annotations, names)
    if out is not None:
        write_coco(data, out)
    return data


# ---------------------------------------------------------------- YOLO

def _image_size(path: Path, source: str) -> tuple[int, int]:
    if not path.is_file():
        raise UserError(source, "", f"image {path} not found")
    return image_size(path)


def _check_normalised(cx: float, cy: float, w: float, h: float, source: str, field: str) -> None:
    """A YOLO box is a share of the image: centre in [0, 1], size in (0, 1]. Pixel coordinates
    (the common slip) and NaN, inf or negative sizes would all convert to garbage boxes."""
    values = (cx, cy, w, h)
    if not all(math.isfinite(v) for v in values):
        raise UserError(source, field, f"expected finite numbers, got {' '.join(f'{v:g}' for v in values)}")
    if not (0 <= cx <= 1 and 0 <= cy <= 1 and 0 < w <= 1 and 0 < h <= 1):
        hint = " (pixel coordinates? YOLO labels are divided by the image size)" if max(values) > 1 else ""
        raise UserError(source, field, f"expected cx cy in [0, 1] and w h in (0, 1], got "
                                       f"{' '.join(f'{v:g}' for v in values)}{hint}")


def yolo_to_coco(labels_dir: str | os.PathLike, images_dir: str | os.PathLike, classes: str | Sequence[str],
                 out: str | os.PathLike | None = None, progress: bool = False) -> dict:
    """YOLO labels (``labels_dir/<image stem>.txt``) of every image in ``images_dir`` -> a COCO dict.

    Images without a label file become images without boxes; label files without an image
    are an error, since their boxes could not be placed.
    """
    labels_dir, images_dir = Path(labels_dir), Path(images_dir)
    for folder, what in ((labels_dir, "labels"), (images_dir, "images")):
        if not folder.is_dir():
            raise UserError(str(folder), "", f"not a folder ({what})")
    names = load_class_names(classes)
    image_files = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    stems = {p.stem for p in image_files}
    orphans = sorted(p.name for p in labels_dir.glob("*.txt") if p.stem not in stems)
    if orphans:
        raise UserError(str(labels_dir / orphans[0]), "", f"no image of that name in {images_dir}")
    images, annotations = [], []
    for image_id, image_file in enumerate(tqdm(image_files, desc="images", unit="img",
                                               disable=None if progress else True), start=1):
        width, height = _image_size(image_file, str(image_file))
        images.append({"id": image_id, "file_name": image_file.name, "width": width, "height": height})
        label_file = labels_dir / f"{image_file.stem}.txt"
        if not label_file.is_file():
            continue
        for line_no, line in enumerate(read_text(label_file, "label file").splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            field = f"line {line_no}"
            if len(parts) != 5:
                raise UserError(str(label_file), field, f"expected 'class cx cy w h', got {len(parts)} values")
            try:
                cls = int(parts[0])
                cx, cy, w, h = (float(v) for v in parts[1:])
            except ValueError:
                raise UserError(str(label_file), field, f"expected an integer class and 4 numbers: {line.strip()!r}") from None
            if not 0 <= cls < len(names):
                raise UserError(str(label_file), field, f"class {cls} outside 0..{len(names) - 1}")
            _check_normalised(cx, cy, w, h, str(label_file), field)
            annotations.append(_annotation(len(annotations) + 1, image_id, cls + 1, (cx - w / 2) * width,
                                           (cy - h / 2) * height, w * width, h * height))
    data = _coco(images, annotations, names)
    if out is not None:
        write_coco(data, out)
    return data
