"""``check_dataset`` finds every planted problem, with file, image id, reason and severity,
and ``ensure_trainable`` refuses a dataset with fatal ones."""

import json

import pytest

from tinynas.data import check_dataset, ensure_trainable, fatal_problems, make_synthetic_dataset
from tinynas.errors import UserError


@pytest.fixture
def dataset(tmp_path):
    made = make_synthetic_dataset(tmp_path / "syn", images=8, val_images=0, size=64, objects=(1, 1), seed=2)
    return made.train_annotations, made.train_images


def plant(ann, images):
    """Plant one of each problem; returns {(image_id, reason fragment): fatal}."""
    data = json.loads(ann.read_text())
    anns = data["annotations"]
    (images / "000001.png").unlink()  # image 2: missing file
    (images / "000002.png").write_bytes(b"not a png at all")  # image 3: unreadable
    data["images"][3]["width"] = 65  # image 4: recorded size disagrees with the file
    by_image = {a["image_id"]: a for a in anns}  # one object per image
    by_image[5]["bbox"] = [50, 50, 30, 30]  # image 5: reaches outside the 64 x 64 image
    by_image[6]["bbox"] = [10, 10, 0, 8]  # image 6: zero width
    by_image[7]["bbox"] = [10, 10, 5, -3]  # image 7: negative height
    by_image[8]["category_id"] = 42  # image 8: unknown category
    del by_image[1]["iscrowd"]  # image 1: missing iscrowd
    anns.append(dict(by_image[1], bbox=[1, 1, 5, 5], iscrowd=0))  # image 1: duplicate annotation id
    anns.append({"id": 999, "image_id": 77, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 0})
    data["images"].append(dict(data["images"][0]))  # duplicate image id 1
    ann.write_text(json.dumps(data))
    return {
        (2, "image file missing"): True,
        (3, "unreadable image"): True,
        (4, "but the annotations say 65 x 64"): True,
        (5, "outside the image"): False,
        (6, "zero or negative size (0 x 8)"): False,
        (7, "zero or negative size (5 x -3)"): False,
        (8, "unknown category id 42"): True,
        (1, "missing iscrowd"): False,
        (1, "duplicate annotation id"): True,
        (77, "unknown image id 77"): True,
        (1, "duplicate image id"): True,
    }


def test_clean_dataset_has_no_problems(dataset):
    assert check_dataset(*dataset) == []
    assert ensure_trainable(*dataset) == []


def test_every_planted_problem_is_reported(dataset):
    ann, images = dataset
    expected = plant(ann, images)
    problems = check_dataset(ann, images)
    for (image_id, fragment), fatal in expected.items():
        matches = [p for p in problems if p.image_id == image_id and fragment in p.reason]
        assert len(matches) == 1, f"image {image_id}: {fragment!r} not reported once in {problems}"
        assert matches[0].fatal == fatal, matches[0]
    assert len(problems) == len(expected)
    # Problems about an image name that image's file; the others name the annotation file.
    by_reason = {p.reason: p for p in problems}
    missing = next(p for r, p in by_reason.items() if "file missing" in r)
    assert missing.file == str(images / "000001.png")
    orphan = next(p for r, p in by_reason.items() if "unknown image id" in r)
    assert orphan.file == str(ann)
    outside = next(p for r, p in by_reason.items() if "outside" in r)
    assert outside.file == str(images / "000004.png")
    assert str(outside).startswith(f"{images / '000004.png'}: image 5: ")
    assert str(outside).endswith("[warning]")


def test_training_refuses_fatal_problems(dataset):
    ann, images = dataset
    plant(ann, images)
    with pytest.raises(UserError) as err:
        ensure_trainable(ann, images)
    message = str(err.value)
    assert "image 2" in message and "image file missing" in message and "6 more fatal problems" in message


def test_warnings_alone_do_not_block_training(dataset):
    ann, images = dataset
    data = json.loads(ann.read_text())
    data["annotations"][0]["bbox"] = [60, 60, 10, 10]
    del data["annotations"][1]["iscrowd"]
    ann.write_text(json.dumps(data))
    warnings = ensure_trainable(ann, images)
    assert len(warnings) == 2 and not fatal_problems(warnings)


def test_truncated_image_needs_decode(dataset):
    ann, images = dataset
    path = images / "000000.png"
    path.write_bytes(path.read_bytes()[:-200])  # header intact, pixel data cut short
    assert check_dataset(ann, images) == []
    problems = check_dataset(ann, images, decode=True)
    assert len(problems) == 1 and problems[0].image_id == 1 and problems[0].fatal


def test_unusable_annotation_file_or_folder_is_a_user_error(tmp_path, dataset):
    bad = tmp_path / "ann.json"
    bad.write_text('{"images": []}')
    with pytest.raises(UserError) as err:
        check_dataset(bad, tmp_path)
    assert err.value.source == str(bad) and err.value.field == "annotations"
    with pytest.raises(UserError, match="no such image folder"):
        check_dataset(dataset[0], tmp_path / "nowhere")


def test_dataset_without_images_or_categories_is_refused(tmp_path):
    ann = tmp_path / "ann.json"
    ann.write_text('{"images": [], "annotations": [], "categories": []}')
    problems = check_dataset(ann, tmp_path)
    assert sorted(p.reason for p in problems) == ["no categories", "no images"]
    assert all(p.fatal and p.image_id is None and p.file == str(ann) for p in problems)
    with pytest.raises(UserError, match="no categories"):
        ensure_trainable(ann, tmp_path)
