"""int8 simulated in training: convolutions quantized the way onnxruntime's QDQ export runs them.

``tinynas export --int8`` (``deploy/quantize.py``) quantizes each Conv's input, output and weight:
weights per output channel, symmetric over [-127, 127] (scale ``max|w| / 127``); activations per
tensor, either ``uint8`` with a zero point (scale ``(hi - lo) / 255`` over a range stretched to hold
0) or ``int8`` symmetric (``max(|lo|, hi) / 127``) - onnxruntime's own formulas
(``quantization/quant_utils.py``: ``compute_scale_zp``). ``FakeQuantConv2d`` rounds the same
tensors to the same grids in the forward pass and lets the gradient through unchanged
(straight-through), so quantization-aware training sees the error the deployed model will have. The
activation ranges are running averages of each batch's min and max (torch's
``MovingAverageMinMaxObserver``), held as buffers so the checkpoint and the EMA carry them; the export
hands them to the quantizer instead of calibrating. Biases stay float here; the export stores them
as int32 at the input scale x the weight scale, a far finer grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .point_conv import SubsampledPointConv

ACTIVATION_FORMS = ("uint8", "int8")
WEIGHT_LEVELS = 127  # symmetric int8 weights: [-127, 127]


def activation_grid(low: float, high: float, form: str) -> tuple[float, int, int, int]:
    """(scale, zero point, qmin, qmax) of a tensor observed in [low, high], as onnxruntime computes them."""
    low, high = min(low, 0.0), max(high, 0.0)
    if form == "uint8":
        qmin, qmax = 0, 255
        scale = (high - low) / 255.0
        if scale < torch.finfo(torch.float32).tiny:
            return 1.0, 0, qmin, qmax
        return scale, int(round(qmin - low / scale)), qmin, qmax
    absmax = max(-low, high)
    scale = 2 * absmax / (2 * WEIGHT_LEVELS)
    if scale < torch.finfo(torch.float32).tiny:
        return 1.0, 0, -WEIGHT_LEVELS, WEIGHT_LEVELS
    return scale, 0, -WEIGHT_LEVELS, WEIGHT_LEVELS


def fake_quantize_weight(weight: torch.Tensor) -> torch.Tensor:
    """Per output channel, symmetric over [-127, 127], as the export stores the weights."""
    absmax = weight.detach().abs().amax(dim=tuple(range(1, weight.ndim)))
    scale = (absmax / WEIGHT_LEVELS).clamp_min(torch.finfo(torch.float32).tiny).float()
    zero = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -WEIGHT_LEVELS, WEIGHT_LEVELS)


class FakeQuantConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (its weight and bias under the same names) whose input, weight and output are
    fake-quantized; ``input_range`` and ``output_range`` are the observed (low, high) of each.

    ``quantize = False`` makes it the plain conv (what the float export traces)."""

    def __init__(self, conv: nn.Conv2d, form: str = "uint8", momentum: float = 0.01):
        if form not in ACTIVATION_FORMS:
            raise ValueError(f"unknown activation form {form!r} (known: {', '.join(ACTIVATION_FORMS)})")
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                         conv.dilation, conv.groups, bias=True, device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            self.weight.copy_(conv.weight)
            self.bias.copy_(conv.bias if conv.bias is not None else torch.zeros_like(self.bias))
        # A strided 1x1 conv reads every stride-th pixel; computed so whatever class the fusing left it
        # as (point_conv.py: torch's CPU weight gradient of the strided form can corrupt the heap).
        self.subsampled = self.kernel_size == (1, 1) and self.stride != (1, 1) and self.padding in ((0, 0), 0)
        self.form, self.momentum, self.quantize = form, momentum, True
        self.register_buffer("input_range", torch.zeros(2))
        self.register_buffer("output_range", torch.zeros(2))
        self.register_buffer("observed", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def _observe(self, buffer: torch.Tensor, x: torch.Tensor, first: bool) -> None:
        seen = torch.stack([x.min(), x.max()]).float()
        if first:
            buffer.copy_(seen)
        else:
            buffer.lerp_(seen, self.momentum)

    def _fake_quantize(self, x: torch.Tensor, buffer: torch.Tensor) -> torch.Tensor:
        scale, zero, qmin, qmax = activation_grid(float(buffer[0]), float(buffer[1]), self.form)
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, qmin, qmax)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stride, padding = self.stride, self.padding
        if self.subsampled:
            x = x[:, :, ::self.stride[0], ::self.stride[1]]
            stride, padding = 1, 0
        if not self.quantize:
            return F.conv2d(x, self.weight, self.bias, stride, padding, self.dilation, self.groups)
        first = self.training and int(self.observed) == 0
        if self.training:
            self._observe(self.input_range, x, first)
        y = F.conv2d(self._fake_quantize(x, self.input_range), fake_quantize_weight(self.weight), self.bias,
                     stride, padding, self.dilation, self.groups)
        if self.training:
            self._observe(self.output_range, y, first)
            self.observed.fill_(1)
        return self._fake_quantize(y, self.output_range)


def prepare_fake_quant(model: nn.Module, form: str = "uint8", momentum: float = 0.01) -> nn.Module:
    """Replace every conv of the (fused) ``model`` by a ``FakeQuantConv2d`` holding its weights."""
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if type(child) in (nn.Conv2d, SubsampledPointConv):
                setattr(module, child_name, FakeQuantConv2d(child, form, momentum))
    return model


def fake_quant_convs(model: nn.Module) -> dict[str, FakeQuantConv2d]:
    return {name: m for name, m in model.named_modules() if isinstance(m, FakeQuantConv2d)}


def fake_quant_form(model: nn.Module) -> str | None:
    """The activation form the model simulates; None when it simulates none."""
    forms = {m.form for m in fake_quant_convs(model).values()}
    if len(forms) > 1:
        raise ValueError(f"the model simulates several activation forms: {sorted(forms)}")
    return forms.pop() if forms else None


def set_fake_quant(model: nn.Module, enabled: bool) -> nn.Module:
    """Switch the simulation on or off (off: the plain float convs, e.g. to export them)."""
    for module in fake_quant_convs(model).values():
        module.quantize = enabled
    return model
