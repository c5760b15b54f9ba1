"""Static-shape ONNX graphs of what a latency table times: one op, a whole backbone, nothing.

An op's graph is the op as a deployed model holds it: a Conv whose bias carries the folded
BatchNorm, the residual ``Add`` on the last conv of a residual unit, then the activation
(ReLU, as the tables are built); a stride-2 unit's shortcut is an ``AveragePool``. The graph
is written node by node with ``onnx.helper``, not traced: a trace per op would cost more
than timing it. A backbone or detector is exported from the fused torch model by the
exporter ``tinynas export`` uses, so the validated graph is the deployed one.
"""

from __future__ import annotations

import numpy as np
import torch

from ..arch import Arch
from ..errors import UserError
from ..ops import DEPTHWISE, ConvOp
from .netops import AVGPOOL

# The hand-written op graphs' opset, the one the shipped tables were timed at; traced graphs
# take the exporter's (deploy.onnx_trace.OPSET).
OPSET = 17


def _onnx():
    try:
        import onnx
    except ImportError:
        raise UserError("--runtime", "", "building ONNX graphs needs onnx: pip install -e \".[export]\"") from None
    return onnx


def _model(onnx, nodes, inputs, output, shape, initializers) -> bytes:
    from onnx import TensorProto, helper
    graph = helper.make_graph(
        nodes, "tinynas_op",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(array.shape)) for name, array in inputs.items()],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, list(shape))],
        initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tinynas")
    model.ir_version = 8  # readable by every runtime version this project supports
    onnx.checker.check_model(model)
    return model.SerializeToString()


def op_graph(op: ConvOp, batch: int, act: str | None = "relu", seed: int = 0) -> tuple[bytes, dict[str, np.ndarray]]:
    """The ONNX model of one table op and random inputs of its shape."""
    onnx = _onnx()
    from onnx import helper, numpy_helper
    rng = np.random.default_rng(seed)
    inputs = {"x": rng.standard_normal((batch, op.in_channels, op.height, op.width), dtype=np.float32)}
    out_shape = (batch, op.out_channels, op.out_height, op.out_width)
    if op.kind == AVGPOOL:
        node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[op.kernel] * 2, strides=[op.stride] * 2,
                                ceil_mode=1)
        return _model(onnx, [node], inputs, "y", out_shape, []), inputs
    groups = op.in_channels if op.kind == DEPTHWISE else op.groups
    weight = rng.standard_normal((op.out_channels, op.in_channels // groups, op.kernel, op.kernel), dtype=np.float32)
    bias = rng.standard_normal(op.out_channels, dtype=np.float32)
    pad = op.kernel // 2
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["conv"], kernel_shape=[op.kernel] * 2,
                              strides=[op.stride] * 2, pads=[pad] * 4, group=groups)]
    last = "conv"
    if op.fused_residual:
        inputs["r"] = rng.standard_normal(out_shape, dtype=np.float32)
        nodes.append(helper.make_node("Add", [last, "r"], ["sum"]))
        last = "sum"
    nodes += _activation(helper, act, last, "y")
    initializers = [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")]
    return _model(onnx, nodes, inputs, "y", out_shape, initializers), inputs


def _activation(helper, act: str | None, source: str, target: str) -> list:
    key = (act or "relu").lower()
    if key == "relu":
        return [helper.make_node("Relu", [source], [target])]
    if key == "silu":
        return [helper.make_node("Sigmoid", [source], ["gate"]), helper.make_node("Mul", [source, "gate"], [target])]
    if key == "identity":
        return [helper.make_node("Identity", [source], [target])]
    raise UserError("act", "", f"no ONNX form for activation {act!r} here (relu, silu, identity)")


def floor_graph() -> tuple[bytes, dict[str, np.ndarray]]:
    """A graph that does almost nothing: its run time is the runtime's per-call floor."""
    onnx = _onnx()
    from onnx import helper
    inputs = {"x": np.zeros((1, 1, 1, 1), dtype=np.float32)}
    return _model(onnx, [helper.make_node("Identity", ["x"], ["y"])], inputs, "y", (1, 1, 1, 1), []), inputs


def network_graph(arch: Arch, resolution: int, batch: int, seed: int = 0) -> tuple[bytes, dict[str, np.ndarray]]:
    """The deployed (BatchNorm-folded) backbone of ``arch`` as ONNX, with a random input."""
    return _traced(seeded_backbone(arch, seed), (batch, arch.in_channels, resolution, resolution), seed)


def seeded_backbone(arch: Arch, seed: int = 0):
    """The deployed backbone with weights drawn from ``seed`` (the global generator is left alone)."""
    from .measure import deployed_backbone
    return _seeded(lambda: deployed_backbone(arch), seed)


def detector_graph(recipe, size: int, batch: int, seed: int = 0) -> tuple[bytes, dict[str, np.ndarray]]:
    """The fused detector (backbone, neck, head; raw head outputs, no decoding) as ONNX."""
    return _traced(RawHead(seeded_detector(recipe, seed)), (batch, 3, size, size), seed)


def seeded_detector(recipe, seed: int = 0):
    """The fused (deploy-form) detector of ``recipe`` with weights drawn from ``seed``."""
    from ..detect.detector import Detector
    return _seeded(lambda: Detector(recipe).fuse(), seed).eval()


def _seeded(build, seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _traced(module: torch.nn.Module, shape: tuple, seed: int) -> tuple[bytes, dict[str, np.ndarray]]:
    """``module`` exported to ONNX as ``tinynas export`` writes a detector, and a random input of ``shape``."""
    from ..deploy.onnx_trace import module_to_onnx, require_exporter

    require_exporter("--runtime", "")
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    return module_to_onnx(module, (x,), ["x"]), {"x": x.numpy()}


class RawHead(torch.nn.Module):
    """What a detector's convolutions produce: the head's class and box logits, undecoded."""

    def __init__(self, detector):
        super().__init__()
        self.detector = detector

    def forward(self, x):
        return self.detector.head(self.detector.features(x))
