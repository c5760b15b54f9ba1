"""The trained size kept in the checkpoint, the ONNX deploy metadata, deploy/infer.py, predict on
.onnx weights, and export --check on a real-range input."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tinynas.checkpoint import DEFAULT_SIZE, load_checkpoint, save_checkpoint
from tinynas.cli import main
from tinynas.data.transforms import PAD_VALUE
from tinynas.train.recipe import parse_train_recipe
from tinynas.train.trainer import train

from test_detect_io import CLASSES, tiny_model
from train_helpers import synthetic, tiny_recipe, write_recipe

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")
from onnx import numpy_helper  # noqa: E402

from tinynas.deploy.onnx_export import CHECK_TOLERANCE, check_export  # noqa: E402

INFER = Path(__file__).resolve().parent.parent / "deploy" / "infer.py"
# A box corner may move by float rounding between torch and onnxruntime (and batch 8 against 1):
# relative to the coordinate, floored at 1 px.
BOX_TOLERANCE = 1e-3
SCORE_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def ckpt64(tmp_path_factory):
    """A 3-class detector recorded as trained at 64 px, with detections on noise."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny64.pt"
    save_checkpoint(path, tiny_model(), CLASSES, category_ids=[3, 5, 9], size=64)
    return path


@pytest.fixture(scope="module")
def old_ckpt(tmp_path_factory):
    """The same weights as a checkpoint written before the size was kept."""
    path = tmp_path_factory.mktemp("old") / "old.pt"
    save_checkpoint(path, tiny_model(), CLASSES)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.RandomState(0)
    Image.fromarray((rng.rand(90, 150, 3) * 255).astype(np.uint8)).save(folder / "000000000042.jpg")
    Image.fromarray((rng.rand(120, 80, 3) * 255).astype(np.uint8)).save(folder / "street.png")
    # Over twice the input size: decoded at a JPEG draft scale, mapped back to the full image.
    Image.fromarray((rng.rand(210, 300, 3) * 255).astype(np.uint8)).save(folder / "big.jpg", quality=90)
    return folder


def predicted(weights, source, out, *extra):
    assert main(["predict", "--weights", str(weights), "--source", str(source), "--out", str(out), "--no-draw",
                 *extra]) == 0
    return json.loads((Path(out) / "predictions.json").read_text())


def same_records(got, want, key="file_name"):
    """Same images, classes and count; boxes and scores within the tolerances."""
    def grouped(records):
        return sorted(records, key=lambda r: (r[key], r["category_id"], -r["score"]))
    got, want = grouped(got), grouped(want)
    assert [(r[key], r["category_id"]) for r in got] == [(r[key], r["category_id"]) for r in want]
    for a, b in zip(got, want):
        assert abs(a["score"] - b["score"]) <= SCORE_TOLERANCE
        assert np.allclose(a["bbox"], b["bbox"], rtol=BOX_TOLERANCE, atol=BOX_TOLERANCE)


def export(weights, out, *extra):
    assert main(["export", "--weights", str(weights), "--out", str(out), *extra]) == 0
    return out


def metadata(path):
    return {p.key: json.loads(p.value) for p in onnx.load(path).metadata_props}


# ----------------------------------------------------------------------------- the trained size

@pytest.fixture(scope="module")
def run64(tmp_path_factory):
    """A run trained one epoch at 64 px, and its recipe document."""
    root = tmp_path_factory.mktemp("run64")
    data = synthetic(root / "data", images=8, val_images=2, size=64, seed=3)
    doc = tiny_recipe(data, root / "run", 64, epochs=1, batch_size=8)
    train(parse_train_recipe(doc), progress=False)
    return root / "run", doc


@pytest.fixture
def eval_sizes(monkeypatch):
    """The input size of every evaluation `tinynas eval` runs (the metrics are not the point)."""
    import tinynas.train.evaluate as evaluate_module

    sizes = []

    def record(model, dataset, **kwargs):
        sizes.append(dataset.size)
        return {**{k: 0.0 for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "P", "R", "F1", "conf_F1")},
                "per_class": {}}

    monkeypatch.setattr(evaluate_module, "evaluate", record)
    return sizes


def test_training_records_its_size_and_eval_uses_it(run64, tmp_path, capsys, eval_sizes):
    run, doc = run64
    for name in ("best.pt", "last.pt"):
        assert load_checkpoint(run / name).size == 64
    # A recipe at another size evaluates the checkpoint at its trained size unless told.
    other = write_recipe(tmp_path / "at128.yaml", {**doc, "data": {**doc["data"], "size": 128}})
    best = str(run / "best.pt")
    assert main(["eval", str(other), "--weights", best]) == 0
    assert "note:" not in capsys.readouterr().err
    assert main(["eval", str(other), "--weights", best, "--size", "96"]) == 0
    assert f"note: {best} was trained at 64 px; running at --size 96" in capsys.readouterr().err
    assert main(["eval", str(other), "--weights", best, "data.size=128"]) == 0
    assert main(["eval", str(run)]) == 0  # the run folder: its best.pt at its size
    assert eval_sizes == [64, 96, 128, 64]


def test_eval_of_an_old_checkpoint_uses_the_recipe_size(run64, tmp_path, eval_sizes):
    run, doc = run64
    ckpt = load_checkpoint(run / "last.pt")
    old = tmp_path / "old.pt"
    save_checkpoint(old, ckpt.build(), ckpt.class_names, category_ids=ckpt.category_ids)  # no size, as before
    assert load_checkpoint(old).size is None
    recipe = write_recipe(tmp_path / "at96.yaml", {**doc, "data": {**doc["data"], "size": 96}})
    assert main(["eval", str(recipe), "--weights", str(old)]) == 0
    assert eval_sizes == [96]


def test_predict_uses_the_trained_size_and_notes_another(ckpt64, images, tmp_path, capsys):
    default = predicted(ckpt64, images, tmp_path / "a")
    assert "note:" not in capsys.readouterr().err
    assert default and default == predicted(ckpt64, images, tmp_path / "b", "--size", "64")
    assert "note:" not in capsys.readouterr().err
    other = predicted(ckpt64, images, tmp_path / "c", "--size", "128")
    notes = [line for line in capsys.readouterr().err.splitlines() if "note" in line]  # beside the progress bar
    assert notes == [f"note: {ckpt64} was trained at 64 px; running at --size 128"]
    assert other != default
    assert {r["category_id"] for r in default} <= {3, 5, 9}  # the checkpoint's ids


def test_an_old_checkpoint_predicts_and_exports_at_the_old_default(old_ckpt, images, tmp_path, capsys):
    assert load_checkpoint(old_ckpt).size is None and DEFAULT_SIZE == 640
    assert predicted(old_ckpt, images, tmp_path / "a") == predicted(old_ckpt, images, tmp_path / "b", "--size", "640")
    assert "note:" not in capsys.readouterr().err
    meta = metadata(export(old_ckpt, tmp_path / "old.onnx"))
    assert meta["input_size"] == 640 and meta["trained_size"] is None


def test_export_uses_the_trained_size_and_notes_another(ckpt64, tmp_path, capsys):
    meta = metadata(export(ckpt64, tmp_path / "m.onnx"))
    assert meta["input_size"] == 64 and meta["input_shape"] == [1, 3, 64, 64] and meta["trained_size"] == 64
    assert "note:" not in capsys.readouterr().err
    assert metadata(export(ckpt64, tmp_path / "m128.onnx", "--size", "128"))["input_size"] == 128
    assert "trained at 64 px; running at --size 128" in capsys.readouterr().err


# ----------------------------------------------------------------------------- metadata

@pytest.mark.parametrize("nms", [False, True])
def test_export_metadata_describes_the_model(ckpt64, tmp_path, nms):
    out = export(ckpt64, tmp_path / "m.onnx", *(["--nms"] if nms else []))
    meta = metadata(out)
    assert meta["tinynas_deploy"] == 1
    assert meta["class_names"] == CLASSES and meta["category_ids"] == [3, 5, 9]
    assert meta["strides"] == [8, 16, 32] and meta["nms"] is nms
    pre = meta["preprocess"]
    assert pre["pad_value"] == PAD_VALUE == 114
    assert (pre["channels"], pre["scale"], pre["layout"], pre["dtype"]) == ("RGB", "1/255", "NCHW", "float32")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [meta["input_name"]]
    assert session.get_inputs()[0].shape == meta["input_shape"]
    outputs = {o.name: o.shape for o in session.get_outputs()}
    assert [o["name"] for o in meta["outputs"]] == list(outputs)
    anchors = 8 * 8 + 4 * 4 + 2 * 2
    if nms:
        (layout,) = meta["outputs"]
        assert layout["columns"] == ["batch_index", "x1", "y1", "x2", "y2", "score", "class"]
        assert outputs["detections"][1] == 7
        post = meta["postprocess"]
        assert post["inside_graph"] and (post["conf_threshold"], post["iou_threshold"], post["max_per_class"]) == (
            0.05, 0.7, 100)
    else:
        assert [o["shape"] for o in meta["outputs"]] == [[1, anchors, 3], [1, anchors, 4]]
        assert [outputs["scores"], outputs["boxes"]] == [[1, anchors, 3], [1, anchors, 4]]
        assert meta["outputs"][1]["columns"] == ["x1", "y1", "x2", "y2"]
        post = meta["postprocess"]
        assert not post["inside_graph"] and (post["conf_threshold"], post["iou_threshold"],
                                             post["max_detections"]) == (0.25, 0.7, 100)


# ----------------------------------------------------------------------------- infer.py and .onnx weights

def infer(model, *args):
    done = subprocess.run([sys.executable, str(INFER), str(model), *map(str, args)], capture_output=True, text=True,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": ""}, timeout=300)
    return done


def infer_records(results, category_ids):
    """infer.py's JSON in predict's record form, for comparison."""
    return [{"file_name": Path(r["image"]).name, "category_id": category_ids[d["class"]], "score": d["score"],
             "bbox": [d["box"][0], d["box"][1], d["box"][2] - d["box"][0], d["box"][3] - d["box"][1]]}
            for r in results for d in r["detections"]]


def test_infer_script_imports_nothing_of_tinynas():
    text = INFER.read_text()
    assert "tinynas" not in "".join(line for line in text.splitlines() if line.startswith(("import", "from")))


@pytest.mark.parametrize("nms", [False, True])
def test_infer_script_gives_predicts_detections(ckpt64, images, tmp_path, nms):
    out = export(ckpt64, tmp_path / "m.onnx", *(["--nms"] if nms else []))
    files = sorted(images.iterdir())
    done = infer(out, *files, "--out", tmp_path / "found.json")
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "found.json").read_text())
    assert [r["image"] for r in results] == [str(f) for f in files]
    assert {(r["width"], r["height"]) for r in results} == {(150, 90), (80, 120), (300, 210)}
    want = predicted(ckpt64, images, tmp_path / "p")
    assert len(want) >= 3 and {r["file_name"] for r in want} == {f.name for f in files}
    same_records(infer_records(results, [3, 5, 9]), want)
    for r in results:
        assert all(d["name"] == CLASSES[d["class"]] for d in r["detections"])
    printed = infer(out, files[0], "--conf", "0.5")  # to stdout
    assert printed.returncode == 0
    assert all(d["score"] > 0.5 for d in json.loads(printed.stdout)[0]["detections"])


def test_infer_script_errors_are_one_line(ckpt64, images, tmp_path):
    out = export(ckpt64, tmp_path / "m.onnx")
    bare = onnx.load(out)
    del bare.metadata_props[:]
    onnx.save(bare, tmp_path / "bare.onnx")
    for args, expected in (((tmp_path / "bare.onnx", images / "street.png"), "metadata_props"),
                           ((out, tmp_path / "missing.png"), "missing.png")):
        done = infer(*args)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and expected in lines[0], done.stderr


@pytest.mark.parametrize("nms", [False, True])
def test_predict_with_onnx_weights_equals_the_checkpoint(ckpt64, images, tmp_path, nms):
    out = export(ckpt64, tmp_path / "m.onnx", *(["--nms"] if nms else []))
    want = predicted(ckpt64, images, tmp_path / "pt")
    got = predicted(out, images, tmp_path / "onnx")
    same_records(got, want)
    assert {r["image_id"] for r in got} == {r["image_id"] for r in want}


def test_predict_with_a_foreign_onnx_or_another_size_is_one_line(ckpt64, images, tmp_path, capsys):
    out = export(ckpt64, tmp_path / "m.onnx")
    bare = onnx.load(out)
    del bare.metadata_props[:]
    onnx.save(bare, tmp_path / "bare.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    for weights, extra, expected in ((tmp_path / "bare.onnx", [], "metadata_props"),
                                     (tmp_path / "junk.onnx", [], "not a readable ONNX model"),
                                     (out, ["--size", "128"], "takes 64 px inputs")):
        capsys.readouterr()
        code = main(["predict", "--weights", str(weights), "--source", str(images), "--out", str(tmp_path / "o"),
                     *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and expected in err[0] and "Unpickl" not in err[0]


# ----------------------------------------------------------------------------- export --check

def _flip_largest_weight(path: Path) -> None:
    graph = onnx.load(path)
    weights = [t for t in graph.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    target = max(weights, key=lambda t: numpy_helper.to_array(t).size)
    target.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(target), target.name))
    onnx.save(graph, path)


@pytest.mark.parametrize("nms", [False, True])
def test_export_check_passes_states_tolerance_and_fails_on_a_corrupted_graph(ckpt64, images, tmp_path, capsys,
                                                                           monkeypatch, nms):
    extra = ["--nms"] if nms else []
    export(ckpt64, tmp_path / "ok.onnx", "--check", *extra)
    out = capsys.readouterr().out
    assert "ok onnxruntime vs torch on a random image in [0, 1]" in out and f"tolerance {CHECK_TOLERANCE:.0e}" in out
    export(ckpt64, tmp_path / "img.onnx", "--check-image", str(images / "street.png"), *extra, "--force")
    assert f"on {images / 'street.png'}" in capsys.readouterr().out

    import tinynas.deploy.onnx_export as onnx_export

    real = onnx_export.export_onnx

    def corrupted(model, path, *args, **kwargs):
        real(model, path, *args, **kwargs)
        _flip_largest_weight(Path(path))

    monkeypatch.setattr(onnx_export, "export_onnx", corrupted)
    code = main(["export", "--weights", str(ckpt64), "--out", str(tmp_path / "bad.onnx"), "--check", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("FAIL onnxruntime vs torch") and "tolerance" in err[0]
    model, _ = __import__("tinynas.checkpoint", fromlist=["load_detector"]).load_detector(ckpt64)
    check = check_export(tmp_path / "bad.onnx", model, 64, nms=nms)
    assert not check.passed and check.error > 10 * CHECK_TOLERANCE


def test_check_feeds_a_real_range_input(ckpt64, monkeypatch, tmp_path):
    """The default check input is in [0, 1], as prepared images are, not [0, 255]."""
    import tinynas.deploy.onnx_export as onnx_export

    seen = []
    real = onnx_export.run_onnx
    monkeypatch.setattr(onnx_export, "run_onnx", lambda path, images: seen.append(images) or real(path, images))
    export(ckpt64, tmp_path / "m.onnx", "--check")
    (images,) = seen
    assert images.shape == (1, 3, 64, 64) and 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    assert float(images.std()) > 0.2  # a spread image, not a constant one
    assert torch.equal(images, torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
