"""Hardening II, the data and prediction side: predictions.json scores what eval scores,
images of every depth and orientation keep their picture, datasets with nothing to learn are
refused before training, label files with impossible numbers are refused, and no JSON file
the project writes holds NaN."""

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tinynas.checkpoint import load_checkpoint, save_checkpoint
from tinynas.cli import main
from tinynas.data import CocoDataset, DetectionDataset, check_dataset, make_loader
from tinynas.data.coco import load_rgb
from tinynas.data.convert import voc_to_coco, yolo_to_coco
from tinynas.detect.detector import Detector
from tinynas.detect.predict import image_ids, predict
from tinynas.errors import UserError
from tinynas.fileio import json_text
from tinynas.memory import image_size, read_rgb
from tinynas.train.evaluate import evaluate
from tinynas.train.recipe import parse_train_recipe
from tinynas.train.trainer import train

from train_helpers import synthetic, tiny_recipe, write_recipe


def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def one_error_line(err: str) -> str:
    assert "Traceback" not in err and "internal error" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("tinynas: error:")]
    assert len(lines) == 1, err
    return lines[0]


def write_coco(path: Path, images, annotations, categories=({"id": 1, "name": "a"},)) -> Path:
    path.write_text(json.dumps({"images": list(images), "annotations": list(annotations),
                                "categories": list(categories)}))
    return path


def image_problems(annotations: Path, images: Path, decode: bool = False):
    """The problems the check finds with images (not the dataset-wide ones)."""
    return [p for p in check_dataset(annotations, images, decode=decode) if p.image_id is not None]


def save_png(path: Path, size=(32, 32), seed=0) -> Path:
    rng = np.random.RandomState(seed)
    Image.fromarray((rng.rand(size[1], size[0], 3) * 255).astype(np.uint8)).save(path)
    return path


# ------------------------------------------------------------------ 5: predictions.json ids


def cocoeval_ap(annotations: Path, results_file: Path) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(annotations))
        ev = COCOeval(gt, gt.loadRes(str(results_file)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_predictions_on_a_coco_dataset_score_exactly_what_eval_scores(trained, tmp_path):
    data, run = trained
    ckpt = load_checkpoint(run / "best.pt")
    assert ckpt.category_ids is None or list(ckpt.category_ids) == [1, 2, 3]
    code, _, err = run_cli(["predict", "--weights", str(run / "best.pt"), "--source", str(data.val_images),
                            "--annotations", str(data.val_annotations), "--out", str(tmp_path / "pred"),
                            "--size", "128", "--conf", "0.001", "--iou", "0.7", "--no-draw"])
    assert code == 0, err
    results = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    # The file's own ids: synthetic images are 000000.png.. with ids 1.., categories 1..3.
    assert {r["image_id"] for r in results} <= set(range(1, 9))
    assert {r["category_id"] for r in results} <= {1, 2, 3}
    stats = cocoeval_ap(data.val_annotations, tmp_path / "pred" / "predictions.json")
    val = DetectionDataset(CocoDataset(data.val_annotations, data.val_images), 128)
    metrics = evaluate(ckpt.build(), val)  # what `tinynas eval RUN` computes
    assert stats[0] > 0
    assert stats[0] == metrics["AP"] and stats[1] == metrics["AP50"]
    code, out, _ = run_cli(["eval", str(run)])
    assert code == 0 and f"{metrics['AP']:.4f}" in out
    assert f"{metrics['P']:.4f}" in out and f"{metrics['R']:.4f}" in out  # at the F1-best confidence


def test_predict_maps_a_reordered_checkpoint_by_name_and_refuses_other_classes(trained, tmp_path):
    data, run = trained
    ckpt = load_checkpoint(run / "best.pt")
    model = ckpt.build()
    doc = json.loads(data.val_annotations.read_text())
    # The same classes under other ids, listed in another order: names decide.
    renumber = {1: 30, 2: 10, 3: 20}
    for cat in doc["categories"]:
        cat["id"] = renumber[cat["id"]]
    for ann in doc["annotations"]:
        ann["category_id"] = renumber[ann["category_id"]]
    (tmp_path / "renumbered.json").write_text(json.dumps(doc))
    results = predict(model, ckpt.class_names, data.val_images, tmp_path / "a", size=128, conf_threshold=0.001,
                      draw=False, progress=False, annotations=tmp_path / "renumbered.json")
    written = json.loads((tmp_path / "a" / "predictions.json").read_text())
    by_label = {label: renumber[label + 1] for label in range(3)}
    expected = [by_label[c] for r in results for c in r.detections.classes.tolist()]
    assert [r["category_id"] for r in written] == expected
    for cat in doc["categories"]:
        cat["name"] = "other-" + cat["name"]
    (tmp_path / "other.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match="other.json: categories: the checkpoint's classes"):
        predict(model, ckpt.class_names, data.val_images, tmp_path / "b", size=128, draw=False, progress=False,
                annotations=tmp_path / "other.json")


def test_image_ids_are_unique_without_a_coco_file():
    assert image_ids([Path("000000000139.jpg"), Path("7.png")]) == [139, 7]
    # 1.png and 01.png were both id 1; a name that is no number was its 0-based position, which
    # could equal another file's number.
    assert image_ids([Path("01.png"), Path("1.png")]) == [1, 2]
    assert image_ids([Path("0.png"), Path("cat.png"), Path("dog.png")]) == [0, 1, 2]
    assert image_ids([Path("2.png"), Path("cat.png"), Path("1.png")]) == [2, 3, 1]


def test_checkpoint_category_ids_are_kept_and_written_by_predict(trained, tmp_path):
    data, run = trained
    ckpt = load_checkpoint(run / "best.pt")
    model = ckpt.build()
    save_checkpoint(tmp_path / "ids.pt", model, ckpt.class_names, category_ids=[5, 9, 2])
    assert load_checkpoint(tmp_path / "ids.pt").category_ids == [5, 9, 2]
    save_checkpoint(tmp_path / "old.pt", model, ckpt.class_names)  # as before ids were kept
    assert load_checkpoint(tmp_path / "old.pt").category_ids is None
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("01.png", "1.png"):
        (folder / name).write_bytes((data.val_images / "000000.png").read_bytes())
    code, _, err = run_cli(["predict", "--weights", str(tmp_path / "ids.pt"), "--source", str(folder), "--out",
                            str(tmp_path / "p"), "--size", "128", "--conf", "0.001", "--no-draw"])
    assert code == 0, err
    written = json.loads((tmp_path / "p" / "predictions.json").read_text())
    assert {r["image_id"] for r in written} == {1, 2}
    assert {r["category_id"] for r in written} <= {5, 9, 2} and len({r["category_id"] for r in written}) > 1


def test_training_keeps_the_datasets_category_ids_in_both_checkpoints(trained):
    from tinynas.data.coco import CocoDataset

    data, run = trained
    ids = CocoDataset(data.train_annotations, data.train_images).category_ids
    for name in ("best.pt", "last.pt"):
        assert load_checkpoint(run / name).category_ids == list(ids)


def _renamed_dataset(data, folder: Path, rename) -> Path:
    """The train annotations of ``data`` with each category's name replaced by ``rename(names)``."""
    doc = json.loads(Path(data.train_annotations).read_text())
    cats = sorted(doc["categories"], key=lambda c: c["id"])
    for cat, name in zip(cats, rename([c["name"] for c in cats])):
        cat["name"] = name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.json").write_text(json.dumps(doc))
    return folder / "train.json"


def test_a_teacher_of_other_classes_is_refused_and_a_reordered_one_only_for_head_methods(trained, tmp_path):
    from tinynas.distill.term import check_teacher_classes
    from tinynas.train.recipe import DistillConfig

    data, run = trained
    names = list(load_checkpoint(run / "best.pt").class_names)
    teacher = str(run / "best.pt")
    check_teacher_classes(DistillConfig(teacher=teacher, method="logit"), names)  # the same classes
    with pytest.raises(UserError, match="class_names: the teacher was trained on other classes"):
        check_teacher_classes(DistillConfig(teacher=teacher), [*names[:-1], "zebra"])
    reordered = names[::-1]
    check_teacher_classes(DistillConfig(teacher=teacher, method="cwd"), reordered)
    with pytest.raises(UserError, match="in another order .* logit distillation compares class scores"):
        check_teacher_classes(DistillConfig(teacher=teacher, method="logit"), reordered)
    # From the CLI: a student dataset whose classes are named otherwise never starts training.
    annotations = _renamed_dataset(data, tmp_path / "renamed", lambda ns: [f"other-{n}" for n in ns])
    doc = tiny_recipe(data, tmp_path / "student", 128, epochs=1, batch_size=16)
    doc["data"]["train_annotations"] = str(annotations)
    code, _, err = run_cli(["train", str(write_recipe(tmp_path / "s.yaml", doc)), "--teacher", teacher, "--quiet"])
    assert code == 2 and "the teacher was trained on other classes" in one_error_line(err), err
    assert not (tmp_path / "student" / "last.pt").exists()


# ------------------------------------------------------------------ 6, 19: decoding, EXIF, suffixes


def test_sixteen_bit_and_float_images_keep_their_picture(tmp_path):
    ramp = np.tile(np.arange(64), (8, 1))
    twelve_bit = (ramp * 4095 // 63).astype(np.uint16)
    Image.fromarray(twelve_bit).save(tmp_path / "i16.png")
    Image.fromarray((ramp * 1000).astype(np.int32)).save(tmp_path / "i32.tif")
    Image.fromarray((ramp / 63).astype(np.float32)).save(tmp_path / "f.tif")
    Image.fromarray((ramp * 10.0 - 100).astype(np.float32)).save(tmp_path / "f_wide.tif")
    for name in ("i16.png", "i32.tif", "f.tif", "f_wide.tif"):
        pixels = load_rgb(tmp_path / name)
        assert pixels.shape == (8, 64, 3) and pixels.dtype == np.uint8
        # A ramp stays a ramp (convert("RGB") clipped these to one or two values).
        assert len(np.unique(pixels[0, :, 0])) >= 60, name
        assert np.all(np.diff(pixels[0, :, 0].astype(int)) >= 0), name
        assert np.array_equal(np.asarray(read_rgb(tmp_path / name)), pixels)
    # A 12-bit sensor in a 16-bit file fills the range: its full scale is 4095, not 65535.
    assert load_rgb(tmp_path / "i16.png")[0, -1, 0] == 255
    assert load_rgb(tmp_path / "f.tif")[0, 0, 0] == 0 and load_rgb(tmp_path / "f.tif")[0, -1, 0] == 255


def test_float_image_with_nan_is_one_line_in_check_and_loader(tmp_path):
    pixels = np.ones((8, 8), dtype=np.float32)
    pixels[2, 3] = np.nan
    Image.fromarray(pixels).save(tmp_path / "nan.tif")
    with pytest.raises(UserError, match=r"nan.tif: image has NaN or infinite pixels"):
        load_rgb(tmp_path / "nan.tif")
    ann = write_coco(tmp_path / "a.json", [{"id": 1, "file_name": "nan.tif", "width": 8, "height": 8}], [])
    assert image_problems(ann, tmp_path) == []  # the header is fine
    problems = image_problems(ann, tmp_path, decode=True)
    assert [p.fatal for p in problems] == [True] and "NaN" in problems[0].reason


def rotated_jpeg(path: Path, orientation: int, size=(40, 20)) -> np.ndarray:
    """A ``size`` stored JPEG whose EXIF says to turn it; returns the stored pixels."""
    pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    pixels[:, : size[0] // 4] = 255  # a white band on the stored left edge
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, exif=exif, quality=95)
    return pixels


def test_exif_orientation_is_applied_everywhere(tmp_path):
    rotated_jpeg(tmp_path / "phone.jpg", 6)  # 6: turn 90 degrees clockwise to show
    assert image_size(tmp_path / "phone.jpg") == (20, 40)
    upright = load_rgb(tmp_path / "phone.jpg")
    assert upright.shape == (40, 20, 3)
    assert upright[:8, :, 0].mean() > 200 and upright[-8:, :, 0].mean() < 50  # the band is now on top
    assert np.array_equal(np.asarray(read_rgb(tmp_path / "phone.jpg")), upright)
    # Annotations of the stored frame are found before training, with the reason.
    stored = write_coco(tmp_path / "stored.json", [{"id": 1, "file_name": "phone.jpg", "width": 40, "height": 20}],
                        [])
    (problem,) = image_problems(stored, tmp_path)
    assert problem.fatal and "after its EXIF orientation (stored 40 x 20" in problem.reason
    # Upright annotations pass, with a warning (a square image could not be told by its size).
    shown = write_coco(tmp_path / "shown.json", [{"id": 1, "file_name": "phone.jpg", "width": 20, "height": 40}], [])
    (warning,) = image_problems(shown, tmp_path)
    assert not warning.fatal and "EXIF orientation 6" in warning.reason
    # YOLO labels are read against the upright size, as Ultralytics reads them.
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "phone.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    converted = yolo_to_coco(labels, tmp_path, ["a"])
    assert (converted["images"][0]["width"], converted["images"][0]["height"]) == (20, 40)


def test_predict_on_a_folder_takes_gifs_and_says_what_it_skipped(tmp_path):
    torch.manual_seed(0)
    recipe = parse_train_recipe(tiny_recipe(synthetic(tmp_path / "d", 1, 0, 64), tmp_path / "r", 64, 1)).model
    save_checkpoint(tmp_path / "m.pt", Detector(recipe), ["a", "b", "c"])
    folder = tmp_path / "in"
    folder.mkdir()
    save_png(folder / "a.png")
    Image.open(save_png(tmp_path / "b.png", seed=1)).convert("P").save(folder / "b.gif")
    (folder / "notes.txt").write_text("not an image")
    code, out, err = run_cli(["predict", "--weights", str(tmp_path / "m.pt"), "--source", str(folder),
                              "--out", str(tmp_path / "p"), "--size", "64"])
    assert code == 0, err
    assert "2 image(s)" in out and "skipped 1 file(s) not named as images: notes.txt" in out
    assert (tmp_path / "p" / "b.png").is_file()  # the gif is drawn as PNG


# ------------------------------------------------------------------ 7: nothing to learn


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    return synthetic(tmp_path_factory.mktemp("small"), images=4, val_images=2, size=64, seed=1)


def broken_copy(annotations: Path, out: Path, edit) -> Path:
    doc = json.loads(annotations.read_text())
    edit(doc)
    out.write_text(json.dumps(doc))
    return out


def train_with(data, tmp_path, train_ann=None, val_ann=None):
    doc = tiny_recipe(data, tmp_path / "run", 64, epochs=1, batch_size=4)
    if train_ann:
        doc["data"]["train_annotations"] = str(train_ann)
    if val_ann:
        doc["data"]["val_annotations"] = str(val_ann)
    return run_cli(["train", str(write_recipe(tmp_path / "r.yaml", doc)), "--quiet"])


def _outside(doc):
    for ann in doc["annotations"]:
        ann["bbox"] = [500.0, 500.0, 10.0, 10.0]


def _crowd(doc):
    for ann in doc["annotations"]:
        ann["iscrowd"] = 1


def _none(doc):
    doc["annotations"] = []


@pytest.mark.parametrize("edit,side,words", [
    (_outside, "train", "no usable box in the train set: of its"),
    (_crowd, "train", "are crowd regions"),
    (_none, "train", "no annotations: the train set needs at least one box"),
    (_none, "val", "no annotations: the val set needs at least one box"),
])
def test_train_refuses_a_set_with_no_usable_box_before_training(small_data, tmp_path, edit, side, words):
    source = small_data.train_annotations if side == "train" else small_data.val_annotations
    broken = broken_copy(source, tmp_path / f"{side}.json", edit)
    code, _, err = train_with(small_data, tmp_path, **{f"{side}_ann": broken})
    assert code == 2
    assert words in one_error_line(err) and f"{side}.json: annotations:" in err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_train_shows_the_data_checks_warnings_on_stderr(small_data, tmp_path):
    def clipped_and_no_val(doc):
        doc["annotations"][0]["bbox"][0] = -20.0
    train_ann = broken_copy(small_data.train_annotations, tmp_path / "t.json", clipped_and_no_val)
    val_ann = broken_copy(small_data.val_annotations, tmp_path / "v.json", _none)
    code, _, err = train_with(small_data, tmp_path, train_ann, val_ann)
    assert code == 2  # the empty val set stops it, after the warnings were shown
    assert "000000.png: image 1: annotation 1: box [-20, 46, 19, 14] outside the image (64 x 64), dropped [warning]" \
        in err.splitlines()[0]


# ------------------------------------------------------------------ 8, 10: impossible numbers


@pytest.mark.parametrize("line,words", [
    ("1 32 32 10 10", "pixel coordinates?"),
    ("0 nan 0.5 0.2 0.2", "expected finite numbers"),
    ("0 0.5 0.5 0.2 inf", "expected finite numbers"),
    ("0 0.5 0.5 -0.2 0.2", "w h in (0, 1]"),
])
def test_yolo_labels_with_impossible_numbers_are_one_line(tmp_path, line, words):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    save_png(tmp_path / "images" / "x.png", (128, 128))
    (tmp_path / "labels" / "x.txt").write_text(f"0 0.5 0.5 0.1 0.1\n{line}\n")
    code, _, err = run_cli(["data", "convert", "--from", "yolo", str(tmp_path / "labels"), "--images",
                            str(tmp_path / "images"), "--classes", "a,b,c", "--out", str(tmp_path / "o.json")])
    assert code == 2
    message = one_error_line(err)
    assert "x.txt: line 2:" in message and words in message
    assert not (tmp_path / "o.json").exists()


def test_undecodable_yolo_label_file_is_one_line(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    save_png(tmp_path / "images" / "x.png")
    (tmp_path / "labels" / "x.txt").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UserError, match="x.txt: cannot read label file"):
        yolo_to_coco(tmp_path / "labels", tmp_path / "images", ["a"])


@pytest.mark.parametrize("box,words", [
    ("<xmin>nan</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax>", "xmin: expected a finite number"),
    ("<xmin>9</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax>", "bndbox: xmax/ymax below xmin/ymin"),
])
def test_voc_boxes_with_impossible_numbers_are_one_line(tmp_path, box, words):
    (tmp_path / "xml").mkdir()
    (tmp_path / "xml" / "a.xml").write_text(
        f"<annotation><filename>a.png</filename><size><width>10</width><height>10</height></size>"
        f"<object><name>cat</name><bndbox>{box}</bndbox></object></annotation>")
    with pytest.raises(UserError, match=words):
        voc_to_coco(tmp_path / "xml")


def test_nan_in_a_coco_bbox_is_an_error_naming_the_annotation(tmp_path):
    save_png(tmp_path / "a.png")
    text = json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": 32, "height": 32}],
                       "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "iscrowd": 0,
                                        "bbox": [1.0, 2.0, float("nan"), 4.0]}],
                       "categories": [{"id": 1, "name": "a"}]})
    assert "NaN" in text
    (tmp_path / "a.json").write_text(text)
    with pytest.raises(UserError, match=r"a.json: annotations\[0\].bbox: expected finite numbers"):
        CocoDataset(tmp_path / "a.json", tmp_path)
    (problem,) = [p for p in check_dataset(tmp_path / "a.json", tmp_path) if p.fatal]
    assert "annotation 7: bbox must be finite numbers" in problem.reason


def test_json_the_project_writes_is_strict():
    text = json_text({"AP": float("nan"), "per_class": {"a": float("inf"), "b": 0.5}, "rows": (1, -float("inf"))})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}")) == {
        "AP": None, "per_class": {"a": None, "b": 0.5}, "rows": [1, None]}


def test_a_design_record_with_a_nan_ap_is_strict_json(tmp_path):
    from tinynas.design.stages import RECORD_NAME, _mark_done

    _mark_done(tmp_path, "report", {"models": [{"model": "a", "AP": float("nan"), "measured_ms": 2.0}]})
    strict = json.loads((tmp_path / RECORD_NAME).read_text(),
                        parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert strict["report"]["models"][0]["AP"] is None and strict["report"]["models"][0]["measured_ms"] == 2.0


# ------------------------------------------------------------------ 11: unreadable image in a worker


def test_unreadable_image_in_a_loader_worker_is_the_same_one_line(small_data, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for path in small_data.train_images.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    whole = (folder / "000001.png").read_bytes()
    (folder / "000001.png").write_bytes(whole[: len(whole) // 2])  # the header survives, the pixels do not
    dataset = DetectionDataset(CocoDataset(small_data.train_annotations, folder), 64)
    for workers in (0, 1):
        with pytest.raises(UserError, match=r"000001.png: unreadable image") as caught:
            for _ in make_loader(dataset, 2, shuffle=False, workers=workers, persistent_workers=False):
                pass
        assert "DataLoader worker" not in str(caught.value)
    doc = tiny_recipe(small_data, tmp_path / "run", 64, epochs=1, batch_size=4)
    doc["data"].update(train_images=str(folder), workers=1, cache="none")
    code, _, err = run_cli(["train", str(write_recipe(tmp_path / "r.yaml", doc)), "--quiet"])
    assert code == 2 and "000001.png: unreadable image" in one_error_line(err)


# ------------------------------------------------------------------ 20: bounds and warnings


def test_synth_bounds_the_objects_per_image(tmp_path):
    code, _, err = run_cli(["data", "synth", str(tmp_path / "s"), "--objects", "1000000,1000000"])
    assert code == 2 and "objects: at most" in one_error_line(err)
    assert not (tmp_path / "s").exists()


def test_check_warns_of_empty_classes_images_listed_twice_and_duplicate_names(tmp_path):
    save_png(tmp_path / "a.png")
    ann = write_coco(tmp_path / "a.json",
                     [{"id": 1, "file_name": "a.png", "width": 32, "height": 32},
                      {"id": 2, "file_name": "a.png", "width": 32, "height": 32}],
                     [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 0}],
                     [{"id": 1, "name": "cat"}, {"id": 2, "name": "cat"}, {"id": 3, "name": "dog"}])
    problems = check_dataset(ann, tmp_path)
    assert not any(p.fatal for p in problems)
    reasons = " | ".join(p.reason for p in problems)
    assert "category 2 has the name 'cat' of category 1" in reasons
    assert "the file is listed twice (also image 1)" in reasons
    assert "category 2 has no usable box" in reasons and "category 3 has no usable box" in reasons
