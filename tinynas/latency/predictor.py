"""Predicted latency of an ``Arch``: the sum of its ops' table latencies plus an overhead.

network_ms(batch) = scale x sum(op latencies) + overhead_ms, per image = that / batch.
``scale`` and ``overhead_ms`` come from the table's sidecar (fitted by ``validate``;
1 and 0 until then), or from the fit ``latency calibrate`` stored there for this machine.
The predictor runs inside the search loop, so it caches: an op is interpolated once, a
(block, input size) is summed once; later calls are dict lookups.
The sidecar's ``extrapolation`` picks how an op is priced (see interpolate): ``tinynas``
reproduces TinyNAS's OpPredictor, measured ops included; the others read a measured op
straight from its row and interpolate only the rest.
"""

from __future__ import annotations

import os

from ..arch import Arch, BlockSpec
from ..errors import UserError
from ..ops import ConvOp
from . import machine
from .interpolate import TinyNASRule, build_groups, group_id
from .netops import AVGPOOL, block_ops
from .table import TINYNAS, LatencyTable, load_table, op_text


class LatencyPredictor:
    """Predicts per-image latency in milliseconds from a ``LatencyTable``."""

    def __init__(self, table: LatencyTable, for_this_machine: bool = True):
        """``for_this_machine``: apply the fit ``latency calibrate`` stored for this machine, if
        any, instead of the table's own scale and overhead (``machine_fit.py``)."""
        self.table = table
        self.machine_fit = machine.machine_fit(table.meta) if for_this_machine else None
        self._groups = None
        self._rule = None
        self._exact = None
        self._op_cache: dict[ConvOp, float] = {}
        self._block_cache: dict[tuple[BlockSpec, int], tuple[float, int]] = {}
        self.extrapolated: set[ConvOp] = set()  # ops priced by the nearest-point fallback
        self._pools = None

    def __getstate__(self) -> dict:
        # Search workers receive the predictor pickled: keep the cached answers, drop the
        # interpolation index (scipy objects, rebuilt on the first unseen op).
        state = self.__dict__.copy()
        state["_groups"] = None
        state["_rule"] = None
        return state

    # ------------------------------------------------------------------ parameters
    @property
    def batch(self) -> int:
        return self.table.batch

    @property
    def scale(self) -> float:
        return float((self.machine_fit or self.table.meta).get("scale", 1.0))

    @property
    def overhead_ms(self) -> float:
        """Per-network overhead for the whole batch, in ms."""
        return float((self.machine_fit or self.table.meta).get("overhead_ms", 0.0))

    @property
    def extrapolation(self) -> str:
        """``none`` (ops outside the measured hull are errors), ``nearest`` (the nearest measured
        op prices them) or ``tinynas`` (TinyNAS's OpPredictor prices every op)."""
        return str(self.table.meta.get("extrapolation", "none"))

    # ------------------------------------------------------------------ ops
    def op_ms(self, op: ConvOp) -> float:
        """Latency of one op for the whole batch (table units), exact or interpolated."""
        cached = self._op_cache.get(op)
        if cached is not None:
            return cached
        if self._exact is None:
            # TinyNAS reads no op straight from its row: a measured op whose C_in/C_out falls
            # between the sampled ratios is interpolated across them like any other.
            self._exact = {} if self.extrapolation == TINYNAS else self.table.latency_by_op()
        value = self._exact.get(op)
        if value is None:
            value = self._interpolate(op)
        self._op_cache[op] = value
        return value

    def _interpolate(self, op: ConvOp) -> float:
        if self.extrapolation == TINYNAS:
            if self._rule is None:
                self._rule = TinyNASRule(self.table.rows, repeats="import_stats" in self.table.meta)
            value, why = self._rule.value(op)
            if value is None:
                raise UserError(self.table.path, "op", f"{op_text(op)} cannot be priced by TinyNAS's rule ({why})")
            return value
        if self._groups is None:
            self._groups = build_groups(self.table.rows, nearest=self.extrapolation == "nearest")
        group = self._groups.get(group_id(op))
        if group is None:
            raise UserError(self.table.path, "op", f"{op_text(op)} lies outside the table's grid "
                            "(no op of this kind, kernel, stride and residual fusion was measured)")
        value, why, nearest = group.value(op)
        if nearest:
            self.extrapolated.add(op)
        if value is None:
            raise UserError(self.table.path, "op", f"{op_text(op)} lies outside the table's grid ({why})")
        return value

    # ------------------------------------------------------------------ blocks and networks
    def block_raw_ms(self, spec: BlockSpec, in_size: int) -> tuple[float, int]:
        """Sum of the block's op latencies (whole batch, unscaled) and its output size."""
        key = (spec, in_size)
        cached = self._block_cache.get(key)
        if cached is not None:
            return cached
        if self._pools is None:
            # Only tables that timed shortcut pooling price it (see netops).
            self._pools = bool((self.table.rows["kind"] == AVGPOOL).any())
        ops, out_size = block_ops(spec, in_size, self._pools)
        total = sum(self.op_ms(op) * repeat for op, repeat in ops)
        self._block_cache[key] = (total, out_size)
        return total, out_size

    def raw_ms(self, arch: Arch, resolution: int) -> float:
        """Sum of every op's table latency, whole batch, before scale and overhead."""
        total, size = 0.0, resolution
        for spec in arch.blocks:
            ms, size = self.block_raw_ms(spec, size)
            total += ms
        return total

    def predict_blocks_ms(self, arch: Arch, resolution: int) -> list[float]:
        """Per-block latency in ms per image (scaled; the network overhead is not in any block)."""
        factor = self.scale / self.batch
        out, size = [], resolution
        for spec in arch.blocks:
            ms, size = self.block_raw_ms(spec, size)
            out.append(ms * factor)
        return out

    def ops_raw_ms(self, op_counts) -> float:
        """Sum of the table latencies of ``(op, count)`` pairs (whole batch, unscaled)."""
        return sum(self.op_ms(op) * count for op, count in op_counts)

    def predict_ops_ms(self, op_counts) -> float:
        """Predicted latency of a network given as its ``(op, count)`` pairs, ms per image."""
        return (self.scale * self.ops_raw_ms(op_counts) + self.overhead_ms) / self.batch

    def predict_ms(self, arch: Arch, resolution: int) -> float:
        """Predicted latency of ``arch`` in milliseconds per image, overhead included."""
        return (self.scale * self.raw_ms(arch, resolution) + self.overhead_ms) / self.batch


def load_predictor(path: str | os.PathLike, device: str | None = None,
                   dtype: str | None = None) -> LatencyPredictor:
    """A predictor over the table at ``path`` (or a shipped name such as ``cpu-fp32``).

    ``device``/``dtype``, when given, must match the table's, so a search never prices a
    GPU model with a CPU table by mistake.
    """
    return LatencyPredictor(load_table(path, device=device, dtype=dtype))
