"""A torch module as static-shape ONNX bytes, through torch's ``torch.export``-based exporter.

One place decides how tinynas writes ONNX, so the deployed detector and the networks a
latency table is validated on are the same kind of graph. The exporter needs ``onnx`` and
``onnxscript`` (the ``export`` extra); the TorchScript exporter it replaces is deprecated
since torch 2.9.
"""

from __future__ import annotations

import contextlib
import logging
import warnings

import torch

from ..errors import UserError

# The lowest opset the exporter writes natively (a lower one goes through onnx's version
# converter); every runtime tinynas targets reads it.
OPSET = 18
# The exporter stamps IR version 10; the graphs use nothing newer than IR 8, which keeps them
# readable by onnxruntime releases before 1.18. onnx's checker confirms the claim.
IR_VERSION = 8
INSTALL_HINT = "install the export extra: pip install 'tinynas[export]' (onnx, onnxscript, onnxruntime)"


def require_exporter(source: str, field: str) -> None:
    """A one-line ``UserError`` naming the missing package, before any work is done."""
    for package in ("onnx", "onnxscript"):
        try:
            __import__(package)
        except ImportError:
            raise UserError(source, field, f"writing ONNX needs the {package} package; {INSTALL_HINT}") from None


@contextlib.contextmanager
def _quiet_exporter():
    # The exporter logs a line per optional torchvision operator it cannot register and
    # warns about internals of torch.export; none of it concerns the graph written.
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def module_to_onnx(module: torch.nn.Module, inputs: tuple, input_names: list[str],
                   output_names: list[str] | None = None, translations: dict | None = None,
                   metadata: dict[str, str] | None = None) -> bytes:
    """``module`` exported at the shapes of ``inputs`` as a serialised ONNX model.

    ``translations`` maps custom torch operators to onnxscript functions that write them;
    ``metadata`` goes into the model's ``metadata_props``.
    """
    import onnx

    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(module, inputs, None, dynamo=True, opset_version=OPSET,
                                    input_names=input_names, output_names=output_names,
                                    custom_translation_table=translations, verbose=False)
    proto = program.model_proto
    proto.ir_version = IR_VERSION
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    return proto.SerializeToString()
