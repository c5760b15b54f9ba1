"""ONNX models timed side by side (`tinynas latency time`): the checks on a file handed in,
the interleaved rounds, the settings taken from a table, and the refusals."""

from __future__ import annotations

import json

import pytest

from tinynas.cli import main
from tinynas.errors import UserError
from tinynas.latency import onnx_graphs
from tinynas.latency.onnx_file import read_onnx_image_model
from tinynas.latency.side_by_side import time_side_by_side, unique_names
from tinynas.ops import ConvOp

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402


def _conv_file(path, out_channels: int, size: int = 32):
    graph, _ = onnx_graphs.op_graph(ConvOp("regular", 3, out_channels, 3, 1, size, size), 1)
    path.write_bytes(graph)
    return path


def _graph_with_input(path, shape, elem=TensorProto.FLOAT, inputs=1):
    """A graph of one Relu per input, the input(s) of ``shape`` (None: a free side)."""
    ins = [helper.make_tensor_value_info(f"in{i}", elem, shape) for i in range(inputs)]
    outs = [helper.make_tensor_value_info(f"out{i}", elem, shape) for i in range(inputs)]
    nodes = [helper.make_node("Relu", [f"in{i}"], [f"out{i}"]) for i in range(inputs)]
    model = helper.make_model(helper.make_graph(nodes, "g", ins, outs), opset_imports=[helper.make_opsetid("", 17)])
    path.write_bytes(model.SerializeToString())
    return path


def test_every_round_times_every_model_in_a_rotated_order_and_the_figures_are_its_runs(tmp_path):
    files = [_conv_file(tmp_path / f"m{c}.onnx", c) for c in (8, 16, 48)]
    result = time_side_by_side(files, 32, rounds=4, runs=5)
    names = [m.name for m in result.models]
    assert names == ["m8", "m16", "m48"]
    # Each round holds every model once; the first model of round r is model r mod 3.
    assert [list(o) for o in result.order] == [names, names[1:] + names[:1], names[2:] + names[:2], names]
    for model in result.models:
        assert len(model.round_medians_ms) == 4
        assert model.min_ms <= model.q25_ms <= model.median_ms <= model.q75_ms
        assert min(model.round_medians_ms) >= model.min_ms
    # 16x the output channels of the same conv costs more than the smallest.
    assert result.by_name("m48").median_ms > result.by_name("m8").median_ms
    assert result.settings["threads"] == 1 and result.settings["runtime"] == "onnxruntime"
    assert result.settings["clock"] == "thread-cpu"  # one thread: the thread's own CPU clock
    doc = json.loads(json.dumps(result.to_json()))
    assert doc["runs_per_round"] == 5 and len(doc["order"]) == 4


def test_a_table_gives_the_runtime_and_thread_count_and_a_mismatch_is_refused(tmp_path):
    path = _conv_file(tmp_path / "m.onnx", 8)
    result = time_side_by_side([path], 32, db="cpu-ort-fp32", rounds=1, runs=3)
    assert result.settings["table"].endswith("cpu-ort-fp32.csv")
    assert result.settings["threads"] == 1
    with pytest.raises(UserError, match="measured in onnxruntime, but openvino was asked for"):
        time_side_by_side([path], 32, db="cpu-ort-fp32", runtime="openvino", rounds=1, runs=1)
    with pytest.raises(UserError, match="measured with 1 thread"):
        time_side_by_side([path], 32, db="cpu-ort-fp32", threads=2, rounds=1, runs=1)
    with pytest.raises(UserError, match="not in eager torch"):
        time_side_by_side([path], 32, db="cpu-fp32", rounds=1, runs=1)


def test_a_file_is_refused_in_one_line_for_each_thing_that_would_make_the_comparison_wrong(tmp_path):
    with pytest.raises(UserError, match="has height 32, but the comparison runs at 64"):
        read_onnx_image_model(_conv_file(tmp_path / "a.onnx", 8), 64)
    with pytest.raises(UserError, match="is float16"):
        read_onnx_image_model(_graph_with_input(tmp_path / "h.onnx", [1, 3, 32, 32], TensorProto.FLOAT16), 32)
    with pytest.raises(UserError, match="expected one image input, found 2"):
        read_onnx_image_model(_graph_with_input(tmp_path / "two.onnx", [1, 3, 32, 32], inputs=2), 32)
    with pytest.raises(UserError, match=r"shape \[1, 32, 32\]"):
        read_onnx_image_model(_graph_with_input(tmp_path / "r3.onnx", [1, 32, 32]), 32)
    with pytest.raises(UserError, match="fixed batch of 4"):
        read_onnx_image_model(_graph_with_input(tmp_path / "b4.onnx", [4, 3, 32, 32]), 32)
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07not a model at all" * 3)
    with pytest.raises(UserError, match="not a readable ONNX model"):
        read_onnx_image_model(tmp_path / "junk.onnx", 32)
    with pytest.raises(UserError, match="not found"):
        read_onnx_image_model(tmp_path / "missing.onnx", 32)


def test_free_sides_are_fed_at_the_size_asked_for(tmp_path):
    path = _graph_with_input(tmp_path / "free.onnx", ["batch", 3, "h", "w"])
    model = read_onnx_image_model(path, 96)
    assert model.input_shape == (None, 3, None, None)
    assert model.inputs_at(96)["in0"].shape == (1, 3, 96, 96)
    result = time_side_by_side([path], 96, rounds=1, runs=2)
    assert result.models[0].median_ms > 0


def test_names_repeat_only_with_their_folder():
    assert unique_names(["a/yolo.onnx", "b/yolo.onnx", "c/ours.onnx"]) == ["a/yolo", "b/yolo", "ours"]


def test_the_cli_prints_each_model_and_writes_the_json(tmp_path, capsys):
    files = [_conv_file(tmp_path / f"m{c}.onnx", c) for c in (8, 32)]
    out = tmp_path / "t.json"
    assert main(["latency", "time", *map(str, files), "--size", "32", "--rounds", "2", "--runs", "3",
                 "--latency-db", "cpu-ort-fp32", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert [m["name"] for m in doc["models"]] == ["m8", "m32"]
    for m in doc["models"]:
        assert f"{m['median_ms']:.3f}" in printed
    fastest = min(m["median_ms"] for m in doc["models"])
    assert f"{doc['models'][1]['median_ms'] / fastest:.3f}" in printed
    assert main(["latency", "time", str(files[0]), "--size", "64"]) == 2
    assert "height 32, but the comparison runs at 64" in capsys.readouterr().err
    # The same settings as keys, among the files or after the flags.
    assert main(["latency", "time", str(files[0]), "size=32", "rounds=1", "--runs", "2", "latency_db=cpu-ort-fp32"]) == 0
    assert "1 rounds x 2 runs at 32 px" in capsys.readouterr().out
    assert main(["latency", "time", str(files[0]), "size=0"]) == 2
    assert "command line: size: expected a positive integer, got 0" in capsys.readouterr().err


def test_a_timing_read_back_from_its_json_is_the_same_value(tmp_path):
    from tinynas.latency.side_by_side import side_by_side_from_json

    result = time_side_by_side([_conv_file(tmp_path / "a.onnx", 8), _conv_file(tmp_path / "b.onnx", 16)], 32,
                               rounds=2, runs=2)
    assert side_by_side_from_json(json.loads(json.dumps(result.to_json()))) == result
