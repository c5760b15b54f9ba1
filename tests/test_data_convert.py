"""VOC XML and YOLO txt -> COCO JSON: labels written here from known boxes come back as the
same boxes through the converter and the COCO loader."""

import json

import numpy as np
import pytest
from PIL import Image

from tinynas.data import CocoDataset, check_dataset, load_class_names, voc_to_coco, yolo_to_coco
from tinynas.errors import UserError

# Known objects per image, in COCO's 0-based continuous pixels: (class, x, y, w, h).
OBJECTS = {
    "street.jpg": ((200, 100), [("car", 10, 20, 50, 30), ("person", 120, 5, 20, 60)]),
    "park.png": ((64, 48), [("dog", 0, 0, 64, 48)]),
    "empty.png": ((32, 32), []),
}


def make_images(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for name, ((w, h), _) in OBJECTS.items():
        Image.new("RGB", (w, h), (90, 90, 90)).save(folder / name)


def write_voc(folder, difficult=()):
    folder.mkdir(parents=True, exist_ok=True)
    for name, ((w, h), objects) in OBJECTS.items():
        parts = [f"<annotation><folder>VOC</folder><filename>{name}</filename>"
                 f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>"]
        for cls, x, y, bw, bh in objects:
            # VOC corners are 1-based and inclusive.
            flag = int((name, cls) in difficult)
            parts.append(f"<object><name>{cls}</name><pose>Unspecified</pose><difficult>{flag}</difficult>"
                         f"<bndbox><xmin>{x + 1}</xmin><ymin>{y + 1}</ymin>"
                         f"<xmax>{x + bw}</xmax><ymax>{y + bh}</ymax></bndbox></object>")
        parts.append("</annotation>")
        (folder / (name.rsplit(".", 1)[0] + ".xml")).write_text("\n".join(parts))


def write_yolo(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name, ((w, h), objects) in OBJECTS.items():
        if not objects:
            continue  # an image without a label file has no objects
        lines = [f"{names.index(cls)} {(x + bw / 2) / w:.6f} {(y + bh / 2) / h:.6f} {bw / w:.6f} {bh / h:.6f}"
                 for cls, x, y, bw, bh in objects]
        (folder / (name.rsplit(".", 1)[0] + ".txt")).write_text("\n".join(lines) + "\n")


def boxes_by_file(data):
    names = {c["id"]: c["name"] for c in data["categories"]}
    files = {img["id"]: img["file_name"] for img in data["images"]}
    out = {name: [] for name in files.values()}
    for ann in data["annotations"]:
        out[files[ann["image_id"]]].append((names[ann["category_id"]], *ann["bbox"]))
    return out


def assert_same_objects(data, atol):
    found = boxes_by_file(data)
    assert set(found) == set(OBJECTS)
    for name, (_, objects) in OBJECTS.items():
        assert len(found[name]) == len(objects)
        for got, want in zip(found[name], objects):
            assert got[0] == want[0]
            np.testing.assert_allclose(got[1:], want[1:], atol=atol)


def test_voc_round_trip(tmp_path):
    make_images(tmp_path / "images")
    write_voc(tmp_path / "xml", difficult={("street.jpg", "person")})
    out = tmp_path / "ann.json"
    data = voc_to_coco(tmp_path / "xml", out=out)
    assert json.loads(out.read_text()) == data
    assert [c["name"] for c in data["categories"]] == ["car", "dog", "person"]
    assert_same_objects(data, atol=0)
    crowd = [a for a in data["annotations"] if a["iscrowd"]]
    assert len(crowd) == 1 and crowd[0]["bbox"] == [120, 5, 20, 60]
    sizes = {img["file_name"]: (img["width"], img["height"]) for img in data["images"]}
    assert sizes["street.jpg"] == (200, 100)
    # The result is a clean dataset, and the loader sees the same boxes (difficult as ignore); the
    # one person is difficult, so that class has nothing to learn from, which the check says.
    assert [p.reason for p in check_dataset(out, tmp_path / "images")] == [
        "category 3 has no usable box (the detector cannot learn it from this set, and scores no AP for it)"]
    ds = CocoDataset(out, tmp_path / "images")
    street = next(ds[i] for i in range(len(ds)) if ds.records[i].file_name == "street.jpg")
    np.testing.assert_array_equal(street.boxes, [[10, 20, 60, 50]])
    np.testing.assert_array_equal(street.ignore, [[120, 5, 140, 65]])


def test_voc_with_a_class_list_and_unknown_names(tmp_path):
    write_voc(tmp_path / "xml")
    data = voc_to_coco(tmp_path / "xml", classes="person,car,dog,cat")
    assert [c["name"] for c in data["categories"]] == ["person", "car", "dog", "cat"]
    assert_same_objects(data, atol=0)
    with pytest.raises(UserError, match="'dog' not in the class list"):
        voc_to_coco(tmp_path / "xml", classes=["person", "car"])


def test_voc_malformed_xml_names_the_file(tmp_path):
    write_voc(tmp_path / "xml")
    (tmp_path / "xml" / "park.xml").write_text("<annotation><filename>park.png</filename><size>")
    with pytest.raises(UserError) as err:
        voc_to_coco(tmp_path / "xml")
    assert err.value.source.endswith("park.xml") and "malformed XML" in str(err.value)
    (tmp_path / "xml" / "park.xml").write_text(
        "<annotation><filename>park.png</filename><size><width>64</width><height>48</height></size>"
        "<object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>big</xmax><ymax>4</ymax>"
        "</bndbox></object></annotation>")
    with pytest.raises(UserError, match="xmax: expected a number"):
        voc_to_coco(tmp_path / "xml")


def test_yolo_round_trip(tmp_path):
    names = ["person", "car", "dog"]
    make_images(tmp_path / "images")
    write_yolo(tmp_path / "labels", names)
    (tmp_path / "names.txt").write_text("\n".join(names) + "\n")
    out = tmp_path / "ann.json"
    data = yolo_to_coco(tmp_path / "labels", tmp_path / "images", str(tmp_path / "names.txt"), out=out)
    assert [c["name"] for c in data["categories"]] == names
    assert [c["id"] for c in data["categories"]] == [1, 2, 3]
    assert_same_objects(data, atol=1e-3)  # six decimals of a normalised coordinate
    assert all(a["iscrowd"] == 0 for a in data["annotations"])
    assert check_dataset(out, tmp_path / "images") == []


def test_yolo_label_errors_name_file_and_line(tmp_path):
    names = ["person", "car", "dog"]
    make_images(tmp_path / "images")
    write_yolo(tmp_path / "labels", names)
    label = tmp_path / "labels" / "park.txt"
    label.write_text("2 0.5 0.5 1.0 1.0\n5 0.5 0.5 0.1 0.1\n")
    with pytest.raises(UserError) as err:
        yolo_to_coco(tmp_path / "labels", tmp_path / "images", names)
    assert err.value.source == str(label) and err.value.field == "line 2"
    label.write_text("2 0.5 0.5 1.0\n")
    with pytest.raises(UserError, match="expected 'class cx cy w h'"):
        yolo_to_coco(tmp_path / "labels", tmp_path / "images", names)
    label.unlink()
    (tmp_path / "labels" / "ghost.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(UserError, match="no image of that name"):
        yolo_to_coco(tmp_path / "labels", tmp_path / "images", names)


def test_class_names_from_list_text_and_yaml(tmp_path):
    assert load_class_names("a, b,c") == ["a", "b", "c"]
    assert load_class_names(["x", "y"]) == ["x", "y"]
    (tmp_path / "data.yaml").write_text("names:\n  0: cat\n  1: dog\n")
    assert load_class_names(str(tmp_path / "data.yaml")) == ["cat", "dog"]
    (tmp_path / "list.yaml").write_text("names: [cat, dog, bird]\n")
    assert load_class_names(str(tmp_path / "list.yaml")) == ["cat", "dog", "bird"]
    with pytest.raises(UserError, match="duplicate class names"):
        load_class_names("a,b,a")
