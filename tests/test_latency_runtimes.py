"""Deployment runtimes: the ONNX graphs they time are the deployed ops, and their setup is checked."""

import sys

import numpy as np
import onnx
import pytest
import torch
import yaml
from onnx import numpy_helper

from tinynas.arch import arch_from_dicts
from tinynas.errors import UserError
from tinynas.latency import onnx_graphs, measure
from tinynas.latency.runtimes import load_runtime
from tinynas.ops import ConvOp

ort = pytest.importorskip("onnxruntime")

TINY = arch_from_dicts([
    {"class": "ConvKXBNRELU", "in": 3, "out": 8, "s": 2, "k": 3},
    {"class": "SuperResK1KX", "in": 8, "out": 16, "s": 2, "k": 3, "L": 2, "btn": 8},
    {"class": "SuperResKXKX", "in": 16, "out": 24, "s": 2, "k": 3, "L": 1, "btn": 16},
], "tiny")


def run_ort(model: bytes, inputs: dict) -> np.ndarray:
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, inputs)[0]


def weights(model: bytes) -> dict:
    return {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in onnx.load_from_string(model).graph.initializer}


@pytest.mark.parametrize("op", [
    ConvOp("regular", 8, 16, 3, 1, 20, 20),
    ConvOp("regular", 8, 16, 3, 2, 21, 21),
    ConvOp("regular", 16, 16, 1, 1, 10, 10, True),
    ConvOp("regular", 8, 12, 5, 2, 16, 16, False, 2),
    ConvOp("depthwise", 16, 16, 3, 1, 12, 12, False, 16),
    ConvOp("depthwise", 16, 16, 5, 2, 12, 12, True, 16),
])
@pytest.mark.parametrize("act", ["relu", "silu"])
def test_an_op_graph_computes_the_deployed_op(op, act):
    model, inputs = onnx_graphs.op_graph(op, batch=2, act=act, seed=3)
    w = weights(model)
    groups = op.in_channels if op.kind == "depthwise" else op.groups
    y = torch.nn.functional.conv2d(torch.from_numpy(inputs["x"]), w["w"], w["b"], op.stride, op.kernel // 2,
                                   groups=groups)
    if op.fused_residual:
        y = y + torch.from_numpy(inputs["r"])
    y = torch.relu(y) if act == "relu" else torch.nn.functional.silu(y)
    got = run_ort(model, inputs)
    assert got.shape == (2, op.out_channels, op.out_height, op.out_width)
    np.testing.assert_allclose(got, y.numpy(), rtol=1e-4, atol=1e-4)


def test_the_shortcut_pool_keeps_the_deployed_shape():
    op = ConvOp("avgpool", 8, 8, 2, 2, 21, 21, False, 8)
    model, inputs = onnx_graphs.op_graph(op, batch=1)
    want = torch.nn.AvgPool2d(2, 2, ceil_mode=True)(torch.from_numpy(inputs["x"]))
    got = run_ort(model, inputs)
    assert got.shape == tuple(want.shape) == (1, 8, op.out_height, op.out_width)
    np.testing.assert_allclose(got[..., :-1, :-1], want.numpy()[..., :-1, :-1], rtol=1e-5, atol=1e-6)


CHAIN_OPS = [
    ConvOp("regular", 8, 16, 3, 2, 21, 21),
    ConvOp("regular", 16, 16, 1, 1, 10, 10, True),
    ConvOp("depthwise", 16, 16, 3, 1, 12, 12, False, 16),
    ConvOp("avgpool", 8, 8, 2, 2, 20, 20, False, 8),
]


def _unit(x, w, prefix, stride=1, groups=1, kernel=1, residual=None, act=torch.relu):
    y = torch.nn.functional.conv2d(x, w[f"{prefix}w"], w[f"{prefix}b"], stride, kernel // 2, groups=groups)
    return act(y if residual is None else y + residual)


@pytest.mark.parametrize("op", CHAIN_OPS)
def test_a_chain_graph_puts_the_op_between_two_pointwise_convs(op):
    model, inputs = onnx_graphs.op_chain_graph(op, batch=2, seed=4)
    w = weights(model)
    x = _unit(torch.from_numpy(inputs["x"]), w, "pre_")
    if op.kind == "avgpool":
        y = torch.nn.AvgPool2d(2, 2, ceil_mode=True)(x)
    else:
        residual = _unit(torch.from_numpy(inputs["r"]), w, "res_") if op.fused_residual else None
        groups = op.in_channels if op.kind == "depthwise" else op.groups
        y = _unit(x, w, "op_", op.stride, groups, op.kernel, residual)
    y = _unit(y, w, "post_")
    got = run_ort(model, inputs)
    assert got.shape == (2, op.out_channels, op.out_height, op.out_width)
    np.testing.assert_allclose(got, y.numpy(), rtol=1e-4, atol=1e-4)
    # the profiler finds the op by its node names
    names = [n.name for n in onnx.load_from_string(model).graph.node]
    assert any(n.startswith("op_") for n in names) and all(n.split("_")[0] in ("pre", "res", "op", "post") for n in names)


OPENVINO_CHAIN_PROBE = """
import json
from tinynas.latency import measure, onnx_graphs
from tinynas.latency.runtimes import load_runtime
from tinynas.ops import ConvOp
runtime = load_runtime("openvino", "cpu", "fp32", 1)
model, inputs = onnx_graphs.op_chain_graph(ConvOp("regular", 32, 32, 3, 1, 40, 40), 1)
setup = measure.setup_device("cpu", "fp32", 1, runtime="openvino")
print(json.dumps({
    "op_timing": runtime.record()["op_timing"],
    "kernels": runtime.kernels(model, inputs),
    "small": measure.measure_op(ConvOp("regular", 32, 32, 3, 1, 10, 10), setup, runs=9).median_ms,
    "big": measure.measure_op(ConvOp("regular", 32, 32, 3, 1, 40, 40), setup, runs=9).median_ms,
    "chain": measure.time_runs(runtime.compile(model, inputs), setup, 3, 9).median_ms,
}))
"""


def test_openvino_times_each_op_in_a_chain_in_f32():
    pytest.importorskip("openvino")
    import json
    import subprocess
    # Its own process: OpenVINO's profiling in a process that already ran many onnxruntime and
    # torch sessions (this suite) later crashed an onnxruntime session in it (see README).
    done = subprocess.run([sys.executable, "-c", OPENVINO_CHAIN_PROBE], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    assert probe["op_timing"] == "in-chain"
    assert load_runtime("onnxruntime", "cpu", "fp32", 1).record()["op_timing"] == "alone"
    # An fp32 table runs in f32, not in the bf16 OpenVINO picks by itself on a CPU that has it:
    # the profiler names the kernels it ran.
    kernels = probe["kernels"]
    assert kernels and all("bf16" not in k for k in kernels) and any("f32" in k for k in kernels)
    assert 0 < probe["small"] < probe["big"]
    # The op's nodes alone: less than the whole chain it sits in.
    assert probe["big"] < probe["chain"]


def test_a_network_graph_is_the_fused_backbone():
    model, inputs = onnx_graphs.network_graph(TINY, resolution=64, batch=1, seed=5)
    reference = onnx_graphs.seeded_backbone(TINY, seed=5)
    with torch.no_grad():
        want = reference(torch.from_numpy(inputs["x"]))[-1]
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    assert len(session.get_outputs()) == 1  # the last block's: no level leaves the runtime's layout
    got = session.run(None, inputs)[-1]
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_a_runtime_times_ops_above_its_dispatch_floor(runtime):
    if runtime == "openvino":
        pytest.importorskip("openvino")
    setup = measure.setup_device("cpu", "fp32", 1, runtime=runtime)
    record = setup.record()
    assert record["runtime"] == runtime and record["runtime_version"] and record["provider"]
    assert 0 < setup.dispatch_floor_ms < 1.0
    small = measure.measure_op(ConvOp("regular", 8, 8, 3, 1, 8, 8), setup, runs=20)
    big = measure.measure_op(ConvOp("regular", 64, 64, 3, 1, 40, 40), setup, runs=5)
    assert 0 < small.median_ms < big.median_ms
    runs = measure.sample_network(TINY, 64, setup, runs=4)
    assert len(runs) == 4 and min(runs) > 0


def test_torch_tables_record_their_runtime_and_time_as_before():
    setup = measure.setup_device("cpu", "fp32", 1)
    assert setup.runtime is None and setup.dispatch_floor_ms == 0.0
    assert setup.record()["runtime"] == "torch" and "dispatch_floor_ms" not in setup.record()


def test_runtime_setup_errors_are_one_line(monkeypatch):
    with pytest.raises(UserError, match="TensorRT runs on an NVIDIA GPU"):
        load_runtime("tensorrt", "cpu", "fp16", 1)
    with pytest.raises(UserError, match="measured in fp32"):
        load_runtime("onnxruntime", "cpu", "fp16", 1)
    with pytest.raises(UserError, match="unknown runtime"):
        load_runtime("tflite", "cpu", "fp32", 1)
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(UserError, match=r'openvino is not installed: pip install -e "\.\[openvino\]"'):
        load_runtime("openvino", "cpu", "fp32", 1)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(UserError, match=r'pip install -e "\.\[export\]"'):
        load_runtime("onnxruntime", "cpu", "fp32", 1)


def test_a_runtime_table_records_its_runtime_and_resumes_only_in_it(tmp_path, capsys):
    from test_latency import TINY_SPACE, tiny_space
    from tinynas.cli import main
    from tinynas.latency import build_table, load_table
    from tinynas.latency.predictor import LatencyPredictor

    out = tmp_path / "ort.csv"
    table = build_table([tiny_space()], out, runtime="onnxruntime", max_ops=10, progress=False)
    meta = table.meta
    assert meta["runtime"] == "onnxruntime" and meta["runtime_version"] == ort.__version__
    assert meta["provider"] == "CPUExecutionProvider" and 0 < meta["dispatch_floor_ms"] < 1
    assert "ONNX graph" in meta["method"] and meta["status"] == "incomplete"
    # the same table resumed in another runtime would mix two runtimes' timings
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY_SPACE))
    code = main(["latency", "build", "--space", str(tmp_path / "tiny.yaml"), "--out", str(out), "--runtime", "openvino"])
    err = capsys.readouterr().err
    assert code == 2 and "runtime" in err and "'onnxruntime'" in err
    table = build_table([tiny_space()], out, runtime="onnxruntime", progress=False)
    assert table.meta["status"] == "complete" and len(load_table(out)) == len(table)
    assert LatencyPredictor(load_table(out)).predict_ms(tiny_space().initial, 16) > 0


def test_a_torch_table_written_before_runtimes_resumes_as_torch(tmp_path):
    import json

    from test_latency import tiny_space
    from tinynas.latency import build_table
    from tinynas.latency.table import read_meta, sidecar_path

    out = tmp_path / "t.csv"
    build_table([tiny_space()], out, max_ops=5, progress=False)
    meta = read_meta(out)
    for key in ("runtime", "runtime_version", "provider"):
        meta.pop(key, None)
    sidecar_path(out).write_text(json.dumps(meta))
    table = build_table([tiny_space()], out, progress=False)
    assert table.meta["status"] == "complete" and table.meta["runtime"] == "torch"


def test_validate_in_another_runtime_leaves_the_table_alone(tmp_path):
    from test_latency import tiny_space
    from tinynas.latency import build_table, validate_table
    from tinynas.latency.table import read_meta

    out = tmp_path / "t.csv"
    build_table([tiny_space()], out, progress=False)
    before = read_meta(out)
    result = validate_table(out, tiny_space(), n=4, runs=3, rounds=1, runtime="onnxruntime", progress=False)
    assert result.metrics["runtime"] == "onnxruntime" and result.metrics["table_runtime"] == "torch"
    assert read_meta(out) == before
    assert len(result.measured_ms) == 4 and min(result.measured_ms) > 0
