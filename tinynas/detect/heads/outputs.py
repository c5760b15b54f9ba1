"""What a dense head predicts, and how other heads' predictions map onto tinynas's contract.

The contract (what ``DetectionLoss``, decoding and distillation read): class logits
``[N, A, C]`` whose sigmoid is the detection score, and box regression ``[N, A, 4 * (reg_max
+ 1)]``, anchors ordered level by level, row-major, anchor points at each cell's top-left
corner (``detect.anchors``). With ``reg_max > 0`` the box part is DFL logits over distances
0..reg_max (in strides) to the left, top, right and bottom sides; with ``reg_max == 0`` it is
those four distances themselves ("ltrb").

Two mappings bring YOLOX-style outputs onto it, both exact:

* objectness: YOLOX scores are ``sigmoid(cls) * sigmoid(obj)``; ``joint_logit`` is the
  logit of that product, so the sigmoid of the mapped class logits is YOLOX's score.
* box: YOLOX predicts (dx, dy, log w, log h) in strides from the same top-left cell corner
  (centre = point + (dx, dy), size = exp(log w, log h)); ``yolox_to_ltrb`` turns that into
  the four side distances.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# What a head's box output is: DFL logits, direct side distances, or YOLOX's centre/size form.
DFL, LTRB, YOLOX = "dfl", "ltrb", "yolox"


@dataclass(frozen=True)
class HeadOutputs:
    """A head's own predictions, levels concatenated: class logits ``[N, A, C]``, boxes
    ``[N, A, R]`` in ``box_coding``, and objectness logits ``[N, A, 1]`` where it has them."""

    cls: torch.Tensor
    box: torch.Tensor
    box_coding: str
    obj: torch.Tensor | None = None


def _log_sigmoid(x: torch.Tensor) -> torch.Tensor:
    # -softplus(-x) stays finite for large |x| in torch and in onnxruntime alike.
    return -F.softplus(-x)


def joint_logit(cls_logits: torch.Tensor, obj_logits: torch.Tensor) -> torch.Tensor:
    """``logit(sigmoid(cls) * sigmoid(obj))``, computed in log space.

    ``1 - s(a) s(b) = s(-a) + s(a) s(-b)``, a sum of two positive terms, so both the log of
    the product and the log of its complement are taken without cancellation.
    """
    log_p = _log_sigmoid(cls_logits) + _log_sigmoid(obj_logits)
    u = _log_sigmoid(-cls_logits)
    v = _log_sigmoid(cls_logits) + _log_sigmoid(-obj_logits)
    log_q = torch.maximum(u, v) + torch.log1p(torch.exp(-(u - v).abs()))
    return log_p - log_q


def yolox_to_ltrb(box: torch.Tensor) -> torch.Tensor:
    """``[..., 4]`` (dx, dy, log w, log h) in strides -> (left, top, right, bottom) in strides."""
    offset = box[..., :2]
    half = torch.exp(box[..., 2:]) / 2
    return torch.cat([half - offset, half + offset], dim=-1)


def to_contract(outputs: HeadOutputs) -> tuple[torch.Tensor, torch.Tensor]:
    """(class logits, box regression) as the loss and decoding read them (module docstring)."""
    cls = outputs.cls if outputs.obj is None else joint_logit(outputs.cls, outputs.obj)
    box = yolox_to_ltrb(outputs.box) if outputs.box_coding == YOLOX else outputs.box
    return cls, box
