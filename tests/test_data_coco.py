"""COCO-JSON loading: label mapping, crowd boxes, empty images, clipping, user errors; the
synthetic generator."""

import json

import numpy as np
import pytest
from PIL import Image

from tinynas.data import CocoDataset, DetectionDataset, make_synthetic_dataset, read_coco_json
from tinynas.errors import UserError


def write_dataset(tmp_path, data, sizes):
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    for name, (w, h) in sizes.items():
        Image.new("RGB", (w, h), (10, 20, 30)).save(images / name)
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(data))
    return ann, images


def base_data():
    return {
        "images": [
            {"id": 7, "file_name": "a.png", "width": 40, "height": 30},
            {"id": 3, "file_name": "b.png", "width": 20, "height": 20},
        ],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 90, "bbox": [1, 2, 10, 5], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 5, "bbox": [30, 20, 20, 20], "iscrowd": 0},
            {"id": 3, "image_id": 7, "category_id": 5, "bbox": [0, 0, 40, 30], "iscrowd": 1},
            {"id": 4, "image_id": 7, "category_id": 12, "bbox": [5, 5, 0, 4], "iscrowd": 0},
        ],
        "categories": [{"id": 90, "name": "zebra"}, {"id": 5, "name": "apple"}, {"id": 12, "name": "cat"}],
    }


def test_labels_are_contiguous_in_id_order_with_names(tmp_path):
    ann, images = write_dataset(tmp_path, base_data(), {"a.png": (40, 30), "b.png": (20, 20)})
    ds = CocoDataset(ann, images)
    assert ds.category_ids == (5, 12, 90)
    assert ds.names == ("apple", "cat", "zebra")
    assert ds.num_classes == 3
    assert len(ds) == 2
    first = ds[0]
    assert first.image_id == 7
    assert first.image.shape == (30, 40, 3) and first.image.dtype == np.uint8
    # xywh -> xyxy; the box reaching outside is clipped; the zero-width box is dropped.
    np.testing.assert_array_equal(first.boxes, [[1, 2, 11, 7], [30, 20, 40, 30]])
    assert first.labels.tolist() == [2, 0]
    np.testing.assert_array_equal(first.ignore, [[0, 0, 40, 30]])


def test_images_without_boxes_are_kept(tmp_path):
    ann, images = write_dataset(tmp_path, base_data(), {"a.png": (40, 30), "b.png": (20, 20)})
    empty = CocoDataset(ann, images)[1]
    assert empty.image_id == 3
    assert empty.boxes.shape == (0, 4) and empty.labels.shape == (0,) and empty.ignore.shape == (0, 4)


@pytest.mark.parametrize("change, field", [
    (lambda d: d["annotations"][0].update(category_id=4), "annotations[0].category_id"),
    (lambda d: d["annotations"][1].update(image_id=99), "annotations[1].image_id"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), "annotations[0].bbox"),
    (lambda d: d["images"].append(dict(d["images"][0])), "images[2].id"),
    (lambda d: d["images"][0].pop("width"), "images[0].width"),
    (lambda d: d.pop("categories"), "categories"),
])
def test_malformed_annotations_name_file_and_field(tmp_path, change, field):
    data = base_data()
    change(data)
    ann, images = write_dataset(tmp_path, data, {})
    with pytest.raises(UserError) as err:
        CocoDataset(ann, images)
    assert err.value.source == str(ann)
    assert err.value.field == field


def test_unreadable_json_is_a_user_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="malformed JSON"):
        read_coco_json(bad)
    with pytest.raises(UserError, match="annotation file not found"):
        read_coco_json(tmp_path / "missing.json")


def test_missing_image_file_is_a_user_error(tmp_path):
    ann, images = write_dataset(tmp_path, base_data(), {"a.png": (40, 30)})
    ds = CocoDataset(ann, images)
    with pytest.raises(UserError, match="image file not found"):
        ds[1]


ALL_SHAPES = ("rectangle", "ellipse", "triangle", "diamond", "cross", "ring")


@pytest.mark.parametrize("options", [{}, {"classes": ALL_SHAPES, "colour": "random", "scale": (0.1, 0.3),
                                          "objects": (4, 8)}])
def test_synthetic_dataset_boxes_match_drawn_shapes(tmp_path, options):
    made = make_synthetic_dataset(tmp_path / "syn", images=6, val_images=2, size=96, seed=5, **options)
    ds = CocoDataset(made.train_annotations, made.train_images)
    assert ds.names == options.get("classes", ("rectangle", "ellipse", "triangle"))
    assert len(ds) == 6 and len(CocoDataset(made.val_annotations, made.val_images)) == 2
    assert sum(len(ds[i].boxes) for i in range(len(ds))) >= 6
    for i in range(len(ds)):
        sample = ds[i]
        # Shapes are saturated; backgrounds are near grey: saturation marks object pixels.
        saturation = sample.image.max(-1).astype(int) - sample.image.min(-1).astype(int)
        covered = np.zeros(saturation.shape, bool)
        for x0, y0, x1, y1 in sample.boxes.astype(int):
            region = saturation[y0:y1, x0:x1] > 90
            # Every edge row and column of a box touches its shape.
            assert region[0].any() and region[-1].any() and region[:, 0].any() and region[:, -1].any()
            covered[y0:y1, x0:x1] = True
        assert not (saturation[~covered] > 90).any(), "shape pixels outside every box"


def test_synthetic_dataset_is_repeatable(tmp_path):
    a = make_synthetic_dataset(tmp_path / "a", images=3, val_images=1, size=64, seed=9)
    b = make_synthetic_dataset(tmp_path / "b", images=3, val_images=1, size=64, seed=9)
    c = make_synthetic_dataset(tmp_path / "c", images=3, val_images=1, size=64, seed=10)
    assert a.train_annotations.read_text() == b.train_annotations.read_text()
    assert (a.train_images / "000001.png").read_bytes() == (b.train_images / "000001.png").read_bytes()
    assert (a.train_images / "000001.png").read_bytes() != (c.train_images / "000001.png").read_bytes()


def test_synthetic_dataset_rejects_unknown_shapes_colours_and_scales(tmp_path):
    with pytest.raises(UserError, match="unknown shape"):
        make_synthetic_dataset(tmp_path, classes=("rectangle", "hexagon"))
    with pytest.raises(UserError, match="colour"):
        make_synthetic_dataset(tmp_path, colour="rainbow")
    with pytest.raises(UserError, match="scale"):
        make_synthetic_dataset(tmp_path, scale=(0.4, 0.2))


def _object_colours(made):
    """Per class, the colour at the centre of each filled object's box."""
    ds = CocoDataset(made.train_annotations, made.train_images)
    found = {}
    for i in range(len(ds)):
        sample = ds[i]
        for (x0, y0, x1, y1), label in zip(sample.boxes.astype(int), sample.labels):
            found.setdefault(ds.names[label], []).append(sample.image[(y0 + y1) // 2, (x0 + x1) // 2].astype(float))
    return {name: np.array(colours) for name, colours in found.items()}


def test_random_colours_leave_only_the_shape_to_tell_classes_apart(tmp_path):
    shapes = ("rectangle", "ellipse", "diamond", "cross")  # filled at the box centre
    by_class = _object_colours(make_synthetic_dataset(tmp_path / "c", images=12, val_images=0, classes=shapes,
                                                      objects=(3, 6), seed=1))
    by_random = _object_colours(make_synthetic_dataset(tmp_path / "r", images=12, val_images=0, classes=shapes,
                                                       objects=(3, 6), seed=1, colour="random"))
    for name in shapes:
        assert by_class[name].std(0).max() < 25  # one base colour, jittered
        assert by_random[name].std(0).min() > 40  # any colour
    # With class colours a nearest-mean rule on colour alone names every object; with random
    # colours it fails on many.
    for colours, floor in ((by_class, 1.0), (by_random, None)):
        means = {name: c.mean(0) for name, c in colours.items()}
        right = sum(min(means, key=lambda m: np.linalg.norm(c - means[m])) == name
                    for name, cs in colours.items() for c in cs)
        share = right / sum(len(cs) for cs in colours.values())
        assert share == floor if floor else share < 0.6


def test_reduced_jpeg_decode_keeps_boxes_on_their_pixels(tmp_path):
    image = np.full((300, 400, 3), 114, np.uint8)
    image[60:180, 80:240] = (255, 0, 0)
    (tmp_path / "images").mkdir()
    Image.fromarray(image).save(tmp_path / "images" / "big.jpg", quality=95)
    data = {"images": [{"id": 1, "file_name": "big.jpg", "width": 400, "height": 300}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [80, 60, 160, 120], "iscrowd": 0}],
            "categories": [{"id": 1, "name": "red"}]}
    (tmp_path / "ann.json").write_text(json.dumps(data))
    ds = CocoDataset(tmp_path / "ann.json", tmp_path / "images")
    full, small = ds[0], ds.load(0, max_side=90)
    assert full.image.shape == (300, 400, 3)
    assert small.image.shape == (75, 100, 3)  # decoded at 1/4: the smallest scale still >= 90
    np.testing.assert_allclose(small.boxes, [[20, 15, 60, 45]])
    red = (small.image[..., 0] > 185) & (small.image[..., 1] < 70)
    ys, xs = np.nonzero(red)
    assert abs(xs.min() - 20) <= 1 and abs(xs.max() + 1 - 60) <= 1
    assert abs(ys.min() - 15) <= 1 and abs(ys.max() + 1 - 45) <= 1
    # The validation pipeline decodes at reduced scale too, yet maps back to the original pixels.
    image, target = DetectionDataset(ds, 90, train=False)[0]
    assert target["scale"] == pytest.approx(90 / 400) and target["pad"] == (0, 11)
    back = target["boxes"].numpy().copy()
    back[:, [0, 2]] = (back[:, [0, 2]] - target["pad"][0]) / target["scale"]
    back[:, [1, 3]] = (back[:, [1, 3]] - target["pad"][1]) / target["scale"]
    # Rounding the resized side to whole pixels costs at most half a model pixel.
    np.testing.assert_allclose(back, [[80, 60, 240, 180]], atol=0.5 / target["scale"])
