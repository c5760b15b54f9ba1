"""Whole-detector latency of a search candidate: its wrapped backbone plus a recipe's neck and head.

A search prices each candidate ``Arch`` alone; what ships is a detector: the ``Arch`` in the
recipe's wrap (``tinynas.plan``), then the recipe's neck and head, whose convolutions change
with the three level widths the candidate hands them (``tinynas.neck_plan``). Both lists are
closed form, so pricing a candidate costs no torch module: the backbone's ops come from
per-block caches in ``plan``, and the neck and head are priced once per (level channels, level
sizes) and kept. The table must hold these ops or their grid neighbours: build it with
``tinynas latency build --space SPACE --model RECIPE`` (see ``grid.detector_groups``).
"""

from __future__ import annotations

import os
from collections import Counter

from ..arch import Arch
from ..errors import UserError
from ..neck_plan import neck_head_op_counts
from ..plan import (backbone_parts, check_out_indices, default_outputs, image_size, output_ends, output_strides,
                    plan)
from .predictor import LatencyPredictor, load_predictor
from .table import LatencyTable


PLANNED_WRAPS = ("res", "csp")  # the wraps tinynas.plan states without torch
CLOSED_FORM_PARTS = ("giraffe", "zero")  # the neck and head tinynas.neck_plan states without torch


class DetectorLatencyModel:
    """``predict_ms(arch, resolution)``: ms per image of ``recipe``'s detector around ``arch``.

    ``table``: a ``LatencyPredictor``, a ``LatencyTable``, or a table path or shipped name
    (loaded on first use, in whichever process uses it). ``recipe``: a ``ModelRecipe``; its
    backbone's wrap, Focus, SPP and output indices are applied to every candidate, and its
    neck and head follow. ``scale`` and ``overhead_ms`` (per image) correct the sum of ops as
    ``latency validate --models`` fits them on whole detectors; by default the table's own.
    """

    def __init__(self, table: LatencyPredictor | LatencyTable | str | os.PathLike, recipe,
                 scale: float | None = None, overhead_ms: float | None = None):
        self.table = table
        self.recipe = recipe
        self.scale = scale
        self.overhead_ms = overhead_ms
        self._predictor: LatencyPredictor | None = None
        # Sums of table latencies (whole batch), by backbone part (plan.backbone_parts keys)
        # and by (level channels, level sizes) for the neck and head: a mutated child shares
        # most parts with its parent, and many candidates share their level widths.
        self._part_ms: dict[tuple, float] = {}
        self._neck_head_ms: dict[tuple, float] = {}
        if recipe.backbone.wrap not in PLANNED_WRAPS:
            raise UserError(recipe.name or "<recipe>", "backbone.wrap", f"a search candidate is priced in the "
                            f"{' or '.join(PLANNED_WRAPS)} wrap; {recipe.backbone.wrap} detectors are priced whole "
                            "(tinynas latency predict --detector)")

    def neck_head_op_counts(self, channels, sizes) -> list:
        """The neck's and head's convolutions for these level widths and sizes: in closed form
        for the default neck and head, traced on the meta device for any other type."""
        neck, head = self.recipe.neck, self.recipe.head
        if (neck.type, head.type) == CLOSED_FORM_PARTS and not neck.options and not head.options:
            return list(neck_head_op_counts(neck, head, channels, sizes))
        from ..detect.conv_ops import traced_neck_head_op_counts

        return traced_neck_head_op_counts(self.recipe, channels, sizes)

    @property
    def predictor(self) -> LatencyPredictor:
        if self._predictor is None:
            if isinstance(self.table, LatencyPredictor):
                self._predictor = self.table
            elif isinstance(self.table, LatencyTable):
                self._predictor = LatencyPredictor(self.table)
            else:
                self._predictor = load_predictor(self.table)
        return self._predictor

    def image_size(self, arch: Arch, resolution: int) -> int:
        """The image size at which ``arch``'s stem sees ``resolution`` (a 12-channel stem after
        Focus sees half the image)."""
        return image_size(arch, resolution, self.recipe.backbone.focus)

    def _out_indices(self, arch: Arch, size: int) -> tuple[int, ...]:
        """The recipe's output indices, checked to give the head's strides for ``arch``."""
        b, strides = self.recipe.backbone, tuple(self.recipe.head.strides)
        if size < max(strides) or size % max(strides):
            raise UserError("<detector>", "size", f"the detector takes multiples of {max(strides)}, got {size}")
        where = f"<arch {arch.digest()}>"
        indices = b.out_indices or default_outputs(arch, b.wrap)
        try:
            check_out_indices(arch, b.wrap, indices)
            levels = output_strides(arch, b.wrap, b.focus, indices)
        except ValueError as err:
            raise UserError(where, "backbone.out_indices", str(err)) from None
        if levels != strides:
            raise UserError(where, "backbone.out_indices", f"levels {list(indices)} are at strides "
                            f"{list(levels)}, the head expects {list(strides)}")
        return indices

    def op_counts(self, arch: Arch, size: int) -> list:
        """Every convolution of the fused detector around ``arch`` at image ``size``, counted."""
        b = self.recipe.backbone
        layout = plan(arch, b.wrap, b.focus, self._out_indices(arch, size), size, b.spp)
        sizes = [level.size for level in layout.levels]
        total = Counter(dict(layout.op_counts))
        total.update(dict(self.neck_head_op_counts(layout.channels, sizes)))
        return sorted(total.items())

    def raw_ms(self, arch: Arch, size: int) -> float:
        """The sum of the detector's op latencies at image ``size`` (whole batch, unscaled)."""
        b = self.recipe.backbone
        indices = self._out_indices(arch, size)
        predictor = self.predictor
        total, block_sizes = 0.0, []
        try:
            parts = backbone_parts(arch, b.wrap, b.focus, size, b.spp)
        except ValueError as err:
            raise UserError(f"<arch {arch.digest()}>", "backbone", str(err)) from None
        for key, ops, sizes in parts:
            ms = self._part_ms.get(key)
            if ms is None:
                ms = self._part_ms[key] = predictor.ops_raw_ms(ops)
            total += ms
            block_sizes += sizes
        ends = output_ends(arch, b.wrap)
        key = (tuple(arch.blocks[ends[i]].out_channels for i in indices), tuple(block_sizes[ends[i]] for i in indices))
        neck_head = self._neck_head_ms.get(key)
        if neck_head is None:
            ops = self.neck_head_op_counts(*key)
            neck_head = self._neck_head_ms[key] = predictor.ops_raw_ms(ops)
        return total + neck_head

    def predict_detector_ms(self, arch: Arch, size: int) -> float:
        """ms per image of the detector around ``arch`` at image ``size``, overhead included."""
        p = self.predictor
        scale = p.scale if self.scale is None else self.scale
        overhead = p.overhead_ms / p.batch if self.overhead_ms is None else self.overhead_ms
        return scale * self.raw_ms(arch, size) / p.batch + overhead

    def predict_ms(self, arch: Arch, resolution: int) -> float:
        """The search's interface: ``resolution`` is what ``arch``'s stem sees, as for
        ``LatencyPredictor.predict_ms`` (a k1kx search at 320 prices 640-pixel detectors)."""
        return self.predict_detector_ms(arch, self.image_size(arch, resolution))
