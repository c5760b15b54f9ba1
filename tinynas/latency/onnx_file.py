"""An ONNX detector handed to us from outside (a peer's export, a model already shipped).

Before such a file is timed beside ours it is read once and checked: one image input of
shape ``[1 or N, 3, H, W]`` in fp32, its static sides (if any) equal to the size it is timed
at, its weights inside the file. Each refusal is one line naming the file and what is wrong,
never a runtime's traceback halfway through a comparison.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError

FLOAT = 1  # onnx.TensorProto.FLOAT
ELEMENT_NAMES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16", 2: "uint8", 3: "int8"}


@dataclass(frozen=True)
class OnnxImageModel:
    """A checked ONNX file: its bytes, image input and content hash."""

    path: Path
    model: bytes
    input_name: str
    # Each side of the input as stored: an int when static, None when the file leaves it free.
    input_shape: tuple[int | None, ...]
    sha256: str

    def inputs_at(self, size: int, seed: int = 0) -> dict[str, np.ndarray]:
        """A random image batch of one at ``size`` x ``size``, bound to the input's name."""
        image = np.random.default_rng(seed).standard_normal((1, 3, size, size)).astype(np.float32)
        return {self.input_name: image}


def read_onnx_image_model(path: str | Path, size: int, field: str = "") -> OnnxImageModel:
    """Read ``path`` and check that it takes one fp32 image that can be fed at ``size``."""
    try:
        import onnx
    except ImportError:
        raise UserError(str(path), field, "reading ONNX files needs onnx: pip install -e \".[export]\"") from None
    path = Path(path)
    if not path.is_file():
        raise UserError(str(path), field, "ONNX file not found" if not path.exists() else "not a file")
    data = path.read_bytes()
    try:
        proto = onnx.load_model_from_string(data)
    except Exception as err:  # protobuf's DecodeError and friends: the file is not a model
        raise UserError(str(path), field, f"not a readable ONNX model ({err.__class__.__name__})") from None
    if not proto.graph.node:
        raise UserError(str(path), field, "not a readable ONNX model (its graph has no nodes)")
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
        raise UserError(str(path), field, "keeps its weights in external data files; export it as one file")
    stored = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in stored]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise UserError(str(path), field, f"expected one image input, found {len(inputs)} ({names})")
    tensor = inputs[0].type.tensor_type
    element = tensor.elem_type
    if element != FLOAT:
        raise UserError(str(path), field, f"input {inputs[0].name!r} is {ELEMENT_NAMES.get(element, element)}; "
                        "export the model in float32 to time it beside fp32 models")
    shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
    if len(shape) != 4 or shape[1] not in (None, 3):
        raise UserError(str(path), field, f"input {inputs[0].name!r} has shape {_shape_text(shape)}; "
                        "expected [batch, 3, height, width]")
    if shape[0] not in (None, 1):
        raise UserError(str(path), field, f"input {inputs[0].name!r} has a fixed batch of {shape[0]}; "
                        "latency is timed at batch 1: export with batch 1")
    for side, name in ((shape[2], "height"), (shape[3], "width")):
        if side is not None and side != size:
            raise UserError(str(path), field, f"input {inputs[0].name!r} has {name} {side}, but the comparison "
                            f"runs at {size}: export it at {size} (or time at --size {side})")
    return OnnxImageModel(path, data, inputs[0].name, shape, hashlib.sha256(data).hexdigest())


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
