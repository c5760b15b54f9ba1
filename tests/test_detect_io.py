"""Checkpoints, ``tinynas predict`` / ``export`` / ``model info``, and their user errors."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tinynas.checkpoint import content_hash, load_checkpoint, load_detector, save_checkpoint
from tinynas.cli import main
from tinynas.detect import build_detector, parse_model_recipe
from tinynas.errors import UserError

TINY_ARCH = [
    {"class": "ConvKXBNRELU", "in": 3, "out": 8, "s": 1, "k": 3},
    {"class": "SuperResK1KX", "in": 8, "out": 16, "s": 2, "k": 3, "L": 1, "btn": 8},
    {"class": "SuperResK1KX", "in": 16, "out": 16, "s": 2, "k": 3, "L": 2, "btn": 8},
    {"class": "SuperResKXKX", "in": 16, "out": 24, "s": 2, "k": 3, "L": 1, "btn": 16},
    {"class": "SuperResK1KX", "in": 24, "out": 32, "s": 2, "k": 3, "L": 1, "btn": 16},
]
CLASSES = ["cat", "dog", "kite"]


def tiny_recipe_doc(num_classes=3, wrap="res"):
    return {"name": "tiny", "backbone": {"arch": TINY_ARCH, "wrap": wrap},
            "neck": {"out_channels": [8, 16, 24], "depth": 1 / 3}, "head": {"num_classes": num_classes}}


def tiny_model(seed=0, num_classes=3, wrap="res", cls_bias=-1.0):
    torch.manual_seed(seed)
    model = build_detector(parse_model_recipe(tiny_recipe_doc(num_classes, wrap), "tiny"))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
        # A higher class bias than the training init gives a random model some detections.
        for conv in model.head.cls_convs:
            conv.bias.fill_(cls_bias)
    return model.eval()


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, tiny_model(), CLASSES)
    return path


@pytest.fixture
def image_dir(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.RandomState(0)
    Image.fromarray((rng.rand(90, 150, 3) * 255).astype(np.uint8)).save(folder / "000000000042.jpg")
    Image.fromarray((rng.rand(120, 80, 3) * 255).astype(np.uint8)).save(folder / "street.png")
    return folder


def test_checkpoint_round_trip_gives_identical_outputs(checkpoint):
    model, names = load_detector(checkpoint)
    assert names == CLASSES and not model.training
    images = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        expected = tiny_model()(images)
        got = model(images)
    for a, b in zip(got, expected):
        assert torch.equal(a, b)
    stored = load_checkpoint(checkpoint)
    assert stored.recipe.backbone.arch.to_dicts()[0]["in"] == 3 and not stored.fused


def test_fused_checkpoint_loads_into_fused_model(tmp_path):
    model = tiny_model(wrap="csp").fuse()
    save_checkpoint(tmp_path / "fused.pt", model, CLASSES, extra={"epoch": 3})
    loaded, _ = load_detector(tmp_path / "fused.pt")
    stored = load_checkpoint(tmp_path / "fused.pt")
    assert stored.fused and stored.extra == {"epoch": 3} and loaded.is_fused
    images = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images))


def test_checkpoint_errors_name_the_file(tmp_path, checkpoint):
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(UserError) as err:
        load_checkpoint(junk)
    assert err.value.source == str(junk)
    other = parse_model_recipe(tiny_recipe_doc(num_classes=5), "other.yaml")
    with pytest.raises(UserError) as err:
        load_detector(checkpoint, other)
    assert err.value.field == "head.num_classes" and "3 classes" in err.value.reason


def test_predict_writes_drawn_images_and_coco_json(checkpoint, image_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["predict", "--weights", str(checkpoint), "--source", str(image_dir), "--out", str(out),
                 "--size", "64", "--conf", "0.2", "--max-det", "7"])
    assert code == 0
    assert (out / "000000000042.jpg").is_file() and (out / "street.png").is_file()
    with Image.open(out / "street.png") as drawn, Image.open(image_dir / "street.png") as original:
        assert drawn.size == original.size
        assert np.asarray(drawn).tolist() != np.asarray(original).tolist()
    records = json.loads((out / "predictions.json").read_text())
    # A COCO name keeps its number; another takes the next free id (not its position, which
    # another file's number could equal).
    assert records and {r["image_id"] for r in records} == {42, 43}
    for r in records:
        assert set(r) >= {"image_id", "category_id", "bbox", "score"}
        assert 0 <= r["category_id"] < 3 and r["score"] >= 0.2
        x, y, w, h = r["bbox"]
        limit = (150, 90) if r["image_id"] == 42 else (80, 120)
        assert 0 <= x and 0 <= y and w >= 0 and h >= 0 and x + w <= limit[0] + 0.01 and y + h <= limit[1] + 0.01
    assert max(sum(r["image_id"] == i for r in records) for i in (42, 43)) <= 7
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["unreadable image", "missing weights", "class mismatch", "no images"])
def test_predict_user_errors_are_one_line_exit_2(case, checkpoint, image_dir, tmp_path, capsys):
    args = ["predict", "--weights", str(checkpoint), "--source", str(image_dir), "--out", str(tmp_path / "o"),
            "--size", "64"]
    if case == "unreadable image":
        (image_dir / "broken.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
        expected = "broken.jpg"
    elif case == "missing weights":
        args[2] = str(tmp_path / "nope.pt")
        expected = "nope.pt"
    elif case == "class mismatch":
        recipe = tmp_path / "five.yaml"
        doc = tiny_recipe_doc(num_classes=5)
        recipe.write_text(json.dumps(doc))  # JSON is YAML
        args += ["--recipe", str(recipe)]
        expected = "3 classes but the recipe has 5"
    else:
        empty = tmp_path / "empty"
        empty.mkdir()
        args[4] = str(empty)
        expected = "no images"
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("tinynas: error:") and expected in err and "\n" not in err


def test_model_info_splits_backbone_neck_head(capsys):
    assert main(["model", "info", "damoyolo-t", "--size", "320"]) == 0
    out = capsys.readouterr().out
    for part in ("backbone", "neck", "head", "total"):
        assert part in out
    assert "4.50" in out  # 18.0 GFLOPs at 640 -> a quarter at 320


def test_model_info_bad_recipe_is_a_user_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("backbone: {arch: damoyolo-t, wrap: dense}\nhead: {}\n")
    assert main(["model", "info", str(bad)]) == 2
    assert "backbone.wrap" in capsys.readouterr().err


def test_onnx_export_matches_torch(checkpoint, tmp_path, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from tinynas.deploy.onnx_export import compare_with_torch, run_onnx

    out = tmp_path / "tiny.onnx"
    assert main(["export", "--weights", str(checkpoint), "--size", "64", "--out", str(out), "--check"]) == 0
    model, _ = load_detector(checkpoint)
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(5)) * 255
    scores, boxes = run_onnx(out, images)
    with torch.no_grad():
        fused = build_detector(model.recipe)
        fused.load_state_dict(model.state_dict())
        expected_scores, expected_boxes = fused.eval().fuse()(images)
    assert scores.shape == tuple(expected_scores.shape)
    for got, expected in ((scores, expected_scores), (boxes, expected_boxes)):
        assert np.abs(got - expected.numpy()).max() <= 1e-4 * np.abs(expected.numpy()).max()
    assert compare_with_torch(out, model, 64, images=images) <= 1e-4


def test_onnx_export_with_nms_matches_torch_nms(checkpoint, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from tinynas.deploy.onnx_export import compare_with_torch, export_onnx, run_onnx

    model, _ = load_detector(checkpoint)
    out = tmp_path / "nms.onnx"
    export_onnx(model, out, size=64, nms=True, conf_threshold=0.2, iou_threshold=0.5, max_detections=20)
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2)) * 255
    (detections,) = run_onnx(out, images)
    assert detections.ndim == 2 and detections.shape[1] == 7 and len(detections) > 0
    assert (detections[:, 5] > 0.2).all() and set(detections[:, 6].astype(int)) <= {0, 1, 2}
    error = compare_with_torch(out, model, 64, nms=True, conf_threshold=0.2, iou_threshold=0.5,
                               max_detections=20, images=images)
    assert error <= 1e-4


def test_weights_that_do_not_fit_the_recipe_are_a_user_error(tmp_path):
    doc = torch.load(save_and_return(tmp_path), weights_only=True)
    doc["recipe"]["neck"]["out_channels"] = [8, 16, 32]
    del doc["sha256"]
    doc["sha256"] = content_hash(doc)  # a consistent file whose recipe and weights disagree
    torch.save(doc, tmp_path / "tampered.pt")
    with pytest.raises(UserError) as err:
        load_detector(tmp_path / "tampered.pt")
    assert err.value.source == str(tmp_path / "tampered.pt") and err.value.field == "state_dict"


def save_and_return(tmp_path):
    path = tmp_path / "plain.pt"
    save_checkpoint(path, tiny_model(), CLASSES)
    return path


def test_predict_takes_its_settings_as_key_value_too(checkpoint, image_dir, tmp_path, capsys):
    """The same run as flags and as keys gives the same detections; a flag after a key wins."""
    flags, keys = tmp_path / "flags", tmp_path / "keys"
    assert main(["predict", "--weights", str(checkpoint), "--source", str(image_dir), "--out", str(flags),
                 "--size", "64", "--conf", "0.2", "--max-det", "7", "--no-draw"]) == 0
    assert main(["predict", f"weights={checkpoint}", f"source={image_dir}", f"out={keys}", "size=64", "conf=0.9",
                 "max_det=7", "draw=false", "--conf", "0.2"]) == 0
    assert json.loads((flags / "predictions.json").read_text()) == json.loads((keys / "predictions.json").read_text())
    assert not list(keys.glob("*.png"))  # draw=false: only the JSON


@pytest.mark.parametrize("argv, words", [
    (["--source", "{images}", "conf=1.5"], "command line: conf: expected a value in [0, 1], got 1.5"),
    (["--source", "{images}", "--max-det", "0"], "--max-det: max_det: expected a positive integer"),
    ([], "--source: missing"),
])
def test_bad_predict_settings_are_one_line_errors(checkpoint, image_dir, tmp_path, capsys, argv, words):
    argv = [a.format(images=image_dir) for a in argv]
    assert main(["predict", "--weights", str(checkpoint), "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]
    assert not (tmp_path / "o").exists()


def test_the_api_takes_the_flags_names_and_the_former_keywords_with_a_note(checkpoint, image_dir, tmp_path, capsys):
    from tinynas.api import predict_images

    new = predict_images(checkpoint, image_dir, tmp_path / "a", 64, conf=0.2, max_det=5, draw=False, progress=False)
    old = predict_images(checkpoint, image_dir, tmp_path / "b", 64, conf_threshold=0.2, max_detections=5, draw=False,
                         progress=False)
    assert [len(r.detections) for r in new] == [len(r.detections) for r in old]
    assert "predict_images(): conf_threshold= is now conf=" in capsys.readouterr().err
    with pytest.raises(TypeError, match="both conf_threshold= .* and conf="):
        predict_images(checkpoint, image_dir, tmp_path / "c", 64, conf=0.3, conf_threshold=0.2)
