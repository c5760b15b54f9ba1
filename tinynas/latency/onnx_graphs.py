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
from ..nn import deployed_backbone
from ..ops import DEPTHWISE, REGULAR, ConvOp
from .netops import AVGPOOL
from .runtimes import OP_NODE_PREFIX

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
    rng = np.random.default_rng(seed)
    inputs = {"x": rng.standard_normal((batch, op.in_channels, op.height, op.width), dtype=np.float32)}
    out_shape = (batch, op.out_channels, op.out_height, op.out_width)
    nodes, initializers = _op_nodes(op, "x", "y", "", act, rng, inputs, batch)
    return _model(onnx, nodes, inputs, "y", out_shape, initializers), inputs


def op_chain_graph(op: ConvOp, batch: int, act: str | None = "relu", seed: int = 0
                   ) -> tuple[bytes, dict[str, np.ndarray]]:
    """The op between a 1x1 conv before it and one after it, as inside a network.

    A runtime that converts convs to its own memory layout converts at the graph's ends only,
    so the op reads and writes that layout as it would among its neighbours; a fused op's
    residual comes from a 1x1 conv too. The op's nodes are named ``runtimes.OP_NODE_PREFIX...``
    for the runtime's per-node profiler; the neighbours' time is not the op's.
    """
    onnx = _onnx()
    rng = np.random.default_rng(seed)
    inputs = {"x": rng.standard_normal((batch, op.in_channels, op.height, op.width), dtype=np.float32)}
    out_shape = (batch, op.out_channels, op.out_height, op.out_width)
    nodes, initializers = _op_nodes(_pointwise(op.in_channels, op.height, op.width), "x", "pre_y", "pre_", act, rng)
    residual = None
    if op.fused_residual:
        inputs["r"] = rng.standard_normal(out_shape, dtype=np.float32)
        more, weights = _op_nodes(_pointwise(op.out_channels, op.out_height, op.out_width), "r", "res_y", "res_",
                                  act, rng)
        nodes, initializers, residual = nodes + more, initializers + weights, "res_y"
    prefix = OP_NODE_PREFIX
    more, weights = _op_nodes(op, "pre_y", f"{prefix}y", prefix, act, rng, residual=residual)
    nodes, initializers = nodes + more, initializers + weights
    more, weights = _op_nodes(_pointwise(op.out_channels, op.out_height, op.out_width), f"{prefix}y", "y", "post_",
                              act, rng)
    return _model(onnx, nodes + more, inputs, "y", out_shape, initializers + weights), inputs


def _pointwise(channels: int, height: int, width: int) -> ConvOp:
    return ConvOp(REGULAR, channels, channels, 1, 1, height, width)


def _op_nodes(op: ConvOp, source: str, target: str, prefix: str, act: str | None, rng,
              inputs: dict | None = None, batch: int = 1, residual: str | None = None) -> tuple[list, list]:
    """The nodes and weights of ``op`` reading ``source`` and writing ``target``, names prefixed.

    A fused op adds ``residual``, or with ``inputs`` a new random graph input ``r``.
    """
    from onnx import helper, numpy_helper
    if op.kind == AVGPOOL:
        return [helper.make_node("AveragePool", [source], [target], name=f"{prefix}pool", kernel_shape=[op.kernel] * 2,
                                 strides=[op.stride] * 2, ceil_mode=1)], []
    groups = op.in_channels if op.kind == DEPTHWISE else op.groups
    weight = rng.standard_normal((op.out_channels, op.in_channels // groups, op.kernel, op.kernel), dtype=np.float32)
    bias = rng.standard_normal(op.out_channels, dtype=np.float32)
    pad = op.kernel // 2
    nodes = [helper.make_node("Conv", [source, f"{prefix}w", f"{prefix}b"], [f"{prefix}conv"], name=f"{prefix}conv",
                              kernel_shape=[op.kernel] * 2, strides=[op.stride] * 2, pads=[pad] * 4, group=groups)]
    last = f"{prefix}conv"
    if op.fused_residual:
        if residual is None:
            inputs["r"] = rng.standard_normal((batch, op.out_channels, op.out_height, op.out_width), dtype=np.float32)
            residual = "r"
        nodes.append(helper.make_node("Add", [last, residual], [f"{prefix}sum"], name=f"{prefix}add"))
        last = f"{prefix}sum"
    nodes += _activation(helper, act, last, target, prefix)
    return nodes, [numpy_helper.from_array(weight, f"{prefix}w"), numpy_helper.from_array(bias, f"{prefix}b")]


def _activation(helper, act: str | None, source: str, target: str, prefix: str = "") -> list:
    key = (act or "relu").lower()
    if key == "relu":
        return [helper.make_node("Relu", [source], [target], name=f"{prefix}act")]
    if key == "silu":
        return [helper.make_node("Sigmoid", [source], [f"{prefix}gate"], name=f"{prefix}gate"),
                helper.make_node("Mul", [source, f"{prefix}gate"], [target], name=f"{prefix}act")]
    if key == "identity":
        return [helper.make_node("Identity", [source], [target], name=f"{prefix}act")]
    raise UserError("act", "", f"no ONNX form for activation {act!r} here (relu, silu, identity)")


def floor_graph() -> tuple[bytes, dict[str, np.ndarray]]:
    """A graph that does almost nothing: its run time is the runtime's per-call floor."""
    onnx = _onnx()
    from onnx import helper
    inputs = {"x": np.zeros((1, 1, 1, 1), dtype=np.float32)}
    return _model(onnx, [helper.make_node("Identity", ["x"], ["y"])], inputs, "y", (1, 1, 1, 1), []), inputs


def network_graph(arch: Arch, resolution: int, batch: int, seed: int = 0) -> tuple[bytes, dict[str, np.ndarray]]:
    """The deployed (BatchNorm-folded) backbone of ``arch`` as ONNX, with a random input.

    Its one output is the last block's. A graph output leaves the runtime's own memory layout
    (OpenVINO: 5.4 ms to convert a 16x320x320 stem output back, a tenth of the network), which
    a detector's neck, reading the levels in place, never pays; a table prices ops only.
    """
    backbone = seeded_backbone(arch, seed)
    backbone.out_blocks = backbone.out_blocks[-1:]
    return _traced(backbone, (batch, arch.in_channels, resolution, resolution), seed)


def seeded_backbone(arch: Arch, seed: int = 0):
    """The deployed backbone with weights drawn from ``seed`` (the global generator is left alone)."""
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
