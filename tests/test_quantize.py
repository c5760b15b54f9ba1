"""Post-training int8 export (``tinynas export --int8``): the quantized file against the float
model, the calibration choices, layers kept in float, and bad calibration input."""

import json

import numpy as np
import onnx
import pytest

from tinynas.api import export_checkpoint, export_int8
from tinynas.cli import main
from tinynas.deploy.onnx_model import OnnxDetector
from tinynas.deploy.quantize import calibration_images, calibration_inputs, compare_float_and_int8, quantize_onnx
from tinynas.errors import UserError

pytest.importorskip("onnxruntime")


def _convs(model) -> list:
    return [n for n in model.graph.node if n.op_type == "Conv"]


def _dequantized_weight(model, conv) -> bool:
    """True when the conv's weight comes out of a DequantizeLinear (the conv runs in int8)."""
    producers = {out: node for node in model.graph.node for out in node.output}
    node = producers.get(conv.input[1])
    return node is not None and node.op_type == "DequantizeLinear"


@pytest.fixture(scope="module")
def float_export(trained, tmp_path_factory):
    data, run = trained
    out = tmp_path_factory.mktemp("q") / "float.onnx"
    export_checkpoint(run / "best.pt", out)
    inputs = calibration_inputs(calibration_images(data.train_images, 16), 128)
    return data, run, out, inputs


def test_int8_export_is_close_to_the_float_model_and_keeps_its_metadata(float_export, tmp_path, capsys):
    data, run, float_path, inputs = float_export
    out = tmp_path / "int8.onnx"
    assert main(["export", "--weights", str(run / "best.pt"), "--out", str(out), "--int8",
                 "--calib", str(data.train_images), "calib_images=16"]) == 0
    printed = capsys.readouterr().out
    assert "int8" in printed and "minmax ranges from 16 images" in printed and "scores max |diff|" in printed
    model = onnx.load(str(out))
    convs = _convs(model)
    assert convs and all(_dequantized_weight(model, c) for c in convs)  # every convolution runs in int8
    meta = {p.key: p.value for p in model.metadata_props}
    floats = {p.key: p.value for p in onnx.load(str(float_path)).metadata_props}
    assert json.loads(meta["precision"])["calibration"] == "minmax" and "precision" not in floats
    assert json.loads(meta["class_names"]) == json.loads(floats["class_names"])
    # Tolerance: on this one-epoch model int8 moves a score by ~0.002 and a box side by ~0.1 px
    # on average; a mis-scaled tensor moves them by tenths and tens of pixels.
    check = compare_float_and_int8(float_path, out, inputs[:8])
    assert check.mean_abs["scores"] < 0.01 and check.mean_abs["boxes"] < 1.0, check
    assert check.max_abs["scores"] < 0.15, check
    # the int8 file predicts as the float one does: same classes and size, each image's best score
    # within a few hundredths (which anchor wins may differ: this model's scores are close)
    import torch

    int8, floating = OnnxDetector(out), OnnxDetector(float_path)
    assert int8.class_names == floating.class_names and int8.size == floating.size
    images = torch.from_numpy(np.concatenate(inputs[:4]))
    for got, want in zip(int8.detect(images, 0.001, 0.7, 10), floating.detect(images, 0.001, 0.7, 10)):
        assert len(got.scores) and len(want.scores)
        assert abs(float(got.scores[0]) - float(want.scores[0])) < 0.05


def test_each_calibration_method_and_activation_form(float_export, tmp_path):
    _, _, float_path, inputs = float_export
    scales = {}
    for method in ("minmax", "percentile"):
        result = quantize_onnx(float_path, tmp_path / f"{method}.onnx", inputs, method)
        assert result.method == method and result.images == len(inputs) and result.quantized_nodes > 0
        model = onnx.load(str(result.path))
        scales[method] = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer
                          if i.name.endswith("_scale")}
    # percentile clips the outliers minmax keeps: some activation ranges are narrower
    narrower = [k for k in scales["minmax"] if np.all(scales["percentile"][k] < scales["minmax"][k] * 0.999)]
    assert narrower
    symmetric = quantize_onnx(float_path, tmp_path / "sym.onnx", inputs, "minmax", activations="int8")
    zero_points = [onnx.numpy_helper.to_array(i) for i in onnx.load(str(symmetric.path)).graph.initializer
                   if i.name.endswith("_zero_point")]
    assert zero_points and not any(z.any() for z in zero_points), [z.dtype for z in zero_points][:8]
    check = compare_float_and_int8(float_path, symmetric.path, inputs[:4])
    assert check.mean_abs["scores"] < 0.02


def test_a_node_kept_in_float_is_not_quantized_and_an_unknown_name_is_refused(float_export, tmp_path):
    _, _, float_path, inputs = float_export
    first = _convs(onnx.load(str(float_path)))[0].name
    result = quantize_onnx(float_path, tmp_path / "keep.onnx", inputs, keep_float=[first])
    model = onnx.load(str(result.path))
    kept = [c for c in _convs(model) if c.name == first]
    assert kept and not _dequantized_weight(model, kept[0]) and result.kept_float == (first,)
    assert all(_dequantized_weight(model, c) for c in _convs(model) if c.name != first)
    with pytest.raises(UserError, match="--keep-float.*no_such_conv"):
        quantize_onnx(float_path, tmp_path / "bad.onnx", inputs, keep_float=["no_such_conv"])


def test_bad_calibration_input_is_one_line_naming_it(trained, tmp_path, capsys):
    data, run = trained
    weights = str(run / "best.pt")
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"not a jpeg")
    cases = [([], "--calib: required with --int8"),
             (["--calib", str(tmp_path / "missing")], "expected a folder of calibration images"),
             (["--calib", str(empty)], "no images"),
             (["--calib", str(broken)], "a.jpg"),
             (["--calib", str(data.train_images), "calib_method=kl"], "calib_method")]
    for extra, said in cases:
        out = tmp_path / "x.onnx"
        assert main(["export", "--weights", weights, "--out", str(out), "--int8", *extra]) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and said in err[0], (extra, err)
        assert not out.exists()
    # an int8 export is always checked against the float model: --check would compare with torch
    assert main(["export", "--weights", weights, "--int8", "--calib", str(data.train_images), "--check"]) == 2
    assert "--check" in capsys.readouterr().err


def test_the_api_writes_beside_the_checkpoint_by_default(trained, tmp_path):
    import shutil

    data, run = trained
    weights = tmp_path / "best.pt"
    shutil.copy(run / "best.pt", weights)
    path, result, check = export_int8(weights, calib=data.train_images, calib_images=4)
    assert path == tmp_path / "best-int8.onnx" and path.is_file() and result.images == 4 and check.images == 4
    with pytest.raises(UserError, match="--out"):  # an existing file is replaced only with force
        export_int8(weights, calib=data.train_images, calib_images=4)


def _graph_with_one_sensitive_conv(path):
    """``scores`` = a 1x1 identity conv of the image; ``boxes`` = a conv reading only the small
    channels of the image times (500, 1, 1): quantized, its input's per-tensor range is set by the
    500-scaled channel, and the channels it reads fall to a step or two."""
    from onnx import TensorProto, helper, numpy_helper

    scale = np.ones((1, 3, 1, 1), np.float32)
    scale[0, 0] = 500
    wb = np.zeros((2, 3, 1, 1), np.float32)
    wb[0, 1] = wb[1, 2] = 1
    graph = helper.make_graph(
        [helper.make_node("Conv", ["images", "wa"], ["scores"], name="benign"),
         helper.make_node("Mul", ["images", "scale"], ["big"], name="outlier"),
         helper.make_node("Conv", ["big", "wb"], ["boxes"], name="sensitive")], "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 3, 16, 16]),
         helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 2, 16, 16])],
        [numpy_helper.from_array(np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1), "wa"),
         numpy_helper.from_array(scale, "scale"), numpy_helper.from_array(wb, "wb")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    rng = np.random.default_rng(0)
    return [rng.random((1, 3, 16, 16), dtype=np.float32) for _ in range(4)]


def test_sensitivity_ranks_the_deliberately_sensitive_layer_first_and_keeping_it_float_repairs_it(tmp_path):
    from tinynas.deploy.sensitivity import layer_sensitivity

    path = tmp_path / "g.onnx"
    inputs = _graph_with_one_sensitive_conv(path)
    ranked = layer_sensitivity(path, inputs)
    assert [r.node for r in ranked] == ["sensitive", "benign"]
    assert ranked[0].worst_snr_db < 10 < 40 < ranked[1].worst_snr_db
    assert ranked[0].snr_db["scores"] == float("inf")  # a conv of the other branch leaves scores exact
    assert ranked[0].cosine["boxes"] < 0.9 < 0.999 < ranked[1].cosine["boxes"]
    both = compare_float_and_int8(path, quantize_onnx(path, tmp_path / "all.onnx", inputs).path, inputs)
    kept = compare_float_and_int8(path, quantize_onnx(path, tmp_path / "kept.onnx", inputs,
                                                      keep_float=["sensitive"]).path, inputs)
    assert kept.mean_abs["boxes"] < both.mean_abs["boxes"] / 20


def test_quant_sensitivity_command_and_export_keeping_the_top_k(trained, tmp_path, capsys):
    import csv

    data, run = trained
    out = tmp_path / "sens"
    assert main(["quant", "sensitivity", "--weights", str(run / "best.pt"), "--calib", str(data.train_images),
                 "calib_images=4", "top=3", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    rows = list(csv.DictReader((out / "sensitivity.csv").open()))
    float_model = tmp_path / "f.onnx"
    export_checkpoint(run / "best.pt", float_model)
    assert len(rows) == len(_convs(onnx.load(str(float_model))))
    snrs = [float(r["worst_snr_db"]) for r in rows]
    assert snrs == sorted(snrs) and (out / "sensitivity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert rows[0]["node"] in printed and rows[3]["node"] not in printed.split("convolutions;")[0]
    # the export keeps the same top layers in float, ranked on the same calibration images
    int8 = tmp_path / "top2.onnx"
    assert main(["export", "--weights", str(run / "best.pt"), "--out", str(int8), "--int8", "--calib",
                 str(data.train_images), "calib_images=4", "keep_float_top=2"]) == 0
    model = onnx.load(str(int8))
    in_float = {c.name for c in _convs(model) if not _dequantized_weight(model, c)}
    assert in_float == {rows[0]["node"], rows[1]["node"]}
    assert "kept float" in capsys.readouterr().out


def test_int8_export_scores_both_files_on_val_when_given_it(trained, tmp_path, capsys):
    from tinynas.train.coco_eval import coco_metrics

    data, run = trained
    out = tmp_path / "q.onnx"
    assert main(["export", "--weights", str(run / "best.pt"), "--out", str(out), "--int8", "--calib",
                 str(data.train_images), "calib_images=8", "--val-images", str(data.val_images),
                 "--val-annotations", str(data.val_annotations)]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("AP on val"))
    # the printed int8 AP is what pycocotools gives the int8 file's predictions on val
    from tinynas.api import predict_images, predictions_file

    predict_images(out, data.val_images, tmp_path / "p", conf=0.001, iou=0.7, max_det=100, draw=False,
                   progress=False, annotations=data.val_annotations)
    ap = coco_metrics(data.val_annotations, json.loads(predictions_file(tmp_path / "p").read_text()))["AP"]
    assert f"int8 {ap:.4f}" in line
    assert main(["export", "--weights", str(run / "best.pt"), "--out", str(tmp_path / "r.onnx"), "--int8", "--calib",
                 str(data.train_images), "--val-images", str(data.val_images)]) == 2
    assert "--val-annotations" in capsys.readouterr().err


def test_quant_sensitivity_scores_the_most_sensitive_layers_alone_on_val(trained, tmp_path, capsys):
    import csv

    from tinynas.api.detect import _val_ap

    data, run = trained
    out = tmp_path / "sens"
    common = ["quant", "sensitivity", "--weights", str(run / "best.pt"), "--calib", str(data.train_images),
              "calib_images=4", "--quiet"]
    assert main([*common, "--val-images", str(data.val_images), "--out", str(out)]) == 2
    assert "--val-annotations" in capsys.readouterr().err
    assert main([*common, "--val-images", str(data.val_images), "--val-annotations", str(data.val_annotations),
                 "ap_top=2", "--out", str(out)]) == 0
    assert "AP alone int8" in capsys.readouterr().out
    rows = list(csv.DictReader((out / "sensitivity.csv").open()))
    assert [bool(r["ap_alone_int8"]) for r in rows[:3]] == [True, True, False]
    float_model = tmp_path / "f.onnx"
    export_checkpoint(run / "best.pt", float_model, size=128)
    float_ap = _val_ap(float_model, data.val_images, data.val_annotations, tmp_path / "float-pred")
    assert float_ap > 0
    for row in rows[:2]:
        assert 0 <= float(row["ap_alone_int8"]) <= 1
        assert float(row["ap_drop_points"]) == pytest.approx((float_ap - float(row["ap_alone_int8"])) * 100, abs=2e-3)
