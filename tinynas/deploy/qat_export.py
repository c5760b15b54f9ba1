"""The ranges a quantization-aware training observed, named as the float export's tensors.

Each ONNX Conv of the float export carries its torch weight's name (``neck.x.conv.weight``), which
names the ``FakeQuantConv2d`` that simulated it; its input and output ranges become the quantizer's
ranges for the Conv's input and output tensors (``quantize_onnx(range_overrides=...)``). onnxruntime
quantizes a tensor once however many Convs read it, so a tensor read by several (a CSP stage's two
1x1 convs, a head's branches) takes the union of their ranges.
"""

from __future__ import annotations

import os

from torch import nn

from ..nn.fake_quant import fake_quant_convs


def observed_ranges(model: nn.Module, float_path: str | os.PathLike) -> dict[str, tuple[float, float]]:
    """(low, high) per tensor of the float export that a simulated conv reads or writes."""
    import onnx

    convs = fake_quant_convs(model)
    ranges: dict[str, tuple[float, float]] = {}

    def widen(tensor: str, low: float, high: float) -> None:
        old = ranges.get(tensor)
        ranges[tensor] = (low, high) if old is None else (min(old[0], low), max(old[1], high))

    graph = onnx.load(str(float_path)).graph
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        module = convs.get(node.input[1].removesuffix(".weight"))
        if module is None:
            raise ValueError(f"the export's {node.name} ({node.input[1]}) has no simulated conv in the model")
        widen(node.input[0], *map(float, module.input_range))
        widen(node.output[0], *map(float, module.output_range))
    return ranges
