"""The convolutions inside each block kind, as data.

A block of depth L is L inner blocks: the first maps ``in -> out`` with the block's stride,
the others map ``out -> out`` with stride 1 and are identical, so a layout is at most two
distinct inner blocks with a repeat count. Costs, scores, latency ops and torch modules all
read this one description, which is why they agree with each other.

Semantics follow TinyNAS's search-time blocks: every conv is followed by BatchNorm; the
residual is average-pooled on stride 2 and projected by a 1x1 conv when channels change.
``detector_unit`` is the same conv path with the shortcut rule of the detector wraps.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from .arch import CONV, K1DWK1, K1KX, K1KXK1, KXKX, BlockSpec


@dataclass(frozen=True)
class Conv:
    """One convolution (always followed by BatchNorm in the built module)."""

    in_channels: int
    out_channels: int
    kernel: int
    stride: int = 1
    groups: int = 1

    def weight_count(self) -> int:
        return self.out_channels * (self.in_channels // self.groups) * self.kernel * self.kernel

    def macs_per_pixel(self) -> int:
        """Multiply-accumulates per output pixel."""
        return self.weight_count()


@dataclass(frozen=True)
class InnerBlock:
    """A residual unit: a plain conv path plus how its shortcut is formed."""

    convs: tuple[Conv, ...]
    stride: int
    residual: bool
    projection: Conv | None = None

    @property
    def in_channels(self) -> int:
        return self.convs[0].in_channels

    @property
    def out_channels(self) -> int:
        return self.convs[-1].out_channels


def unit_convs(spec: BlockSpec, cin: int, cout: int, stride: int) -> tuple[Conv, ...]:
    """The conv path of one unit of ``spec`` mapping ``cin -> cout``; ``convs[1]`` is the
    k x k conv that carries the stride (the one a detector wrap makes a RepConv)."""
    k, btn, g = spec.kernel, spec.bottleneck, spec.groups
    if spec.cls == K1KX:
        return (Conv(cin, btn, 1), Conv(btn, cout, k, stride, g))
    if spec.cls == KXKX:
        # TinyNAS's ResKXKX (and DAMO-YOLO's) strides on the second conv, as nn/wrap_res.py does.
        return (Conv(cin, btn, k, 1, g), Conv(btn, cout, k, stride, g))
    if spec.cls == K1KXK1:
        return (Conv(cin, btn, 1), Conv(btn, btn, k, stride, g), Conv(btn, cout, 1))
    if spec.cls == K1DWK1:
        return (Conv(cin, btn, 1), Conv(btn, btn, k, stride, btn), Conv(btn, cout, 1))
    raise ValueError(f"no inner layout for {spec.cls}")


def detector_unit(spec: BlockSpec, cin: int, cout: int, stride: int) -> InnerBlock:
    """One unit as DAMO-YOLO's detector wraps build it (``nn/wrap_res.py``, ``nn/wrap_csp.py``).

    Its shortcut rule is not TinyNAS's search-time one above: a stride-2 unit has no shortcut
    at all, a stride-1 unit always adds one, projected by a 1x1 conv when channels change
    (for every class, K1DWK1 included, and with no forced projection on K1KXK1's first unit).
    """
    residual = stride == 1
    projection = Conv(cin, cout, 1) if residual and cin != cout else None
    return InnerBlock(unit_convs(spec, cin, cout, stride), stride, residual, projection)


def _inner(spec: BlockSpec, cin: int, stride: int, first: bool) -> InnerBlock:
    cout = spec.out_channels
    convs = unit_convs(spec, cin, cout, stride)
    if spec.cls == K1DWK1:
        # Inverted residuals keep a shortcut only when shapes allow an identity.
        residual, projection = cin == cout, None
    else:
        residual = True
        # TinyNAS forces a projection on the first bottleneck unit, as ResNet does.
        needs_proj = cin != cout or (spec.cls == K1KXK1 and first)
        projection = Conv(cin, cout, 1) if needs_proj else None
    return InnerBlock(convs, stride, residual, projection)


@lru_cache(maxsize=1 << 16)
def block_layout(spec: BlockSpec) -> tuple[tuple[InnerBlock, int], ...]:
    """The distinct inner blocks of ``spec`` with how many times each repeats."""
    if spec.cls == CONV:
        conv = Conv(spec.in_channels, spec.out_channels, spec.kernel, spec.stride, spec.groups)
        return ((InnerBlock((conv,), spec.stride, False), 1),)
    first = _inner(spec, spec.in_channels, spec.stride, True)
    if spec.depth == 1:
        return ((first, 1),)
    rest = _inner(spec, spec.out_channels, 1, False)
    return ((first, 1), (rest, spec.depth - 1))
