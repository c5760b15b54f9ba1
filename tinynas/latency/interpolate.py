"""Latency of ops the table did not measure, read off the ops it did.

Rows are grouped by everything except channel counts and size (kind, kernel, stride,
fused, groups); inside a group, each measured size holds a surface over (C_in, C_out):

- a full rectilinear grid (what ``tinynas latency build`` measures) -> multilinear
  interpolation (scipy ``RegularGridInterpolator``): exact on grid points, monotone between
  them when the table is, and exact for latencies bilinear in (C_in, C_out);
- scattered points (imported TinyNAS tables) -> piecewise-linear over a Delaunay
  triangulation (scipy ``LinearNDInterpolator``), as TinyNAS's own predictor does;
- a single channel axis (depthwise convs and pools, or a group with one C_in) -> 1-D linear.

A size between two measured sizes is interpolated linearly in pixel count (H x W) between
the surfaces above and below it. Outside the measured hull there is no answer (the caller
turns ``None`` into an error naming the op) unless the table opts into TinyNAS's fallback,
``extrapolation: nearest``: the nearest measured point in (log C_in, log C_out). Imported
TinyNAS tables need it because they sample a few in/out channel ratios, not a grid.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import LinearNDInterpolator, RegularGridInterpolator
from scipy.spatial import QhullError

from ..ops import ConvOp
from .netops import CHANNELWISE

GroupId = tuple  # (kind, kernel, stride, fused, groups or 0 for channel-wise ops)


def group_id(op: ConvOp) -> GroupId:
    return (op.kind, op.kernel, op.stride, op.fused_residual, 0 if op.kind in CHANNELWISE else op.groups)


class Surface:
    """Latency over (C_in, C_out) at one size; ``__call__`` gives (None, False) outside the hull."""

    def __init__(self, cin: np.ndarray, cout: np.ndarray, ms: np.ndarray, depthwise: bool,
                 nearest: bool = False):
        self.nearest = nearest
        self._points = np.log2(np.column_stack([cin, cout]).astype(float))
        self._values = ms.astype(float)
        self.exact = {(int(a), int(b)): float(v) for a, b, v in zip(cin, cout, ms)}
        self.lo = (int(cin.min()), int(cout.min()))
        self.hi = (int(cin.max()), int(cout.max()))
        self._fn = None
        self._build(cin.astype(float), cout.astype(float), ms.astype(float), depthwise)

    def _build(self, cin, cout, ms, depthwise) -> None:
        ins, outs = np.unique(cin), np.unique(cout)
        if depthwise or len(ins) == 1 or len(outs) == 1:
            # One free axis: the channels of a depthwise conv, or whichever axis varies.
            axis = 0 if (depthwise or len(outs) == 1) else 1
            xs = cin if axis == 0 else cout
            order = np.argsort(xs)
            xs, ys = xs[order], ms[order]
            fixed = None if depthwise else (outs[0] if axis == 0 else ins[0])
            self._fn = ("line", axis, xs, ys, fixed)
        elif len(ins) * len(outs) == len(ms):
            grid = np.full((len(ins), len(outs)), np.nan)
            grid[np.searchsorted(ins, cin), np.searchsorted(outs, cout)] = ms
            interp = RegularGridInterpolator((ins, outs), grid, method="linear", bounds_error=False,
                                             fill_value=None)
            self._fn = ("grid", interp)
        else:
            try:
                interp = LinearNDInterpolator(np.column_stack([cin, cout]), ms)
            except (QhullError, ValueError):
                interp = None  # collinear points: only exact hits answer
            self._fn = ("scatter", interp)

    def __call__(self, cin: int, cout: int) -> tuple[float | None, bool]:
        """(latency, whether the nearest-point fallback supplied it)."""
        hit = self.exact.get((cin, cout))
        if hit is not None:
            return hit, False
        value = self._inside(cin, cout)
        if value is None and self.nearest:
            d = np.sum((self._points - np.log2([cin, cout])) ** 2, axis=1)
            return float(self._values[int(np.argmin(d))]), True
        return value, False

    def _inside(self, cin: int, cout: int) -> float | None:
        if not (self.lo[0] <= cin <= self.hi[0] and self.lo[1] <= cout <= self.hi[1]):
            return None
        kind = self._fn[0]
        if kind == "line":
            _, axis, xs, ys, fixed = self._fn
            if fixed is not None and (cout if axis == 0 else cin) != fixed:
                return None
            return float(np.interp(cin if axis == 0 else cout, xs, ys))
        if kind == "grid":
            return float(self._fn[1]([[cin, cout]])[0])
        interp = self._fn[1]
        if interp is None:
            return None
        value = float(interp([[cin, cout]])[0])
        return None if np.isnan(value) else value


@dataclass
class Group:
    """The surfaces of one group, by size; sizes sorted by pixel count for interpolation."""

    surfaces: dict[tuple[int, int], Surface]

    def __post_init__(self) -> None:
        self.sizes = sorted(self.surfaces, key=lambda hw: (hw[0] * hw[1], hw))
        self.areas = [h * w for h, w in self.sizes]

    def value(self, op: ConvOp) -> tuple[float | None, str, bool]:
        """(latency or None, why None, whether the nearest-point fallback was used)."""
        size = (op.height, op.width)
        if size in self.surfaces:
            v, near = self.surfaces[size](op.in_channels, op.out_channels)
            return v, "" if v is not None else "channels outside the measured range at this size", near
        area = op.height * op.width
        i = bisect.bisect_left(self.areas, area)
        if i == 0 or i == len(self.areas):
            measured = ", ".join(f"{h}x{w}" for h, w in self.sizes)
            return None, f"size outside the measured sizes ({measured})", False
        below, above = self.sizes[i - 1], self.sizes[i]
        lo, near_lo = self.surfaces[below](op.in_channels, op.out_channels)
        hi, near_hi = self.surfaces[above](op.in_channels, op.out_channels)
        if lo is None or hi is None:
            return (None, f"channels outside the measured range at {below[0]}x{below[1]} or "
                    f"{above[0]}x{above[1]}", False)
        a0, a1 = self.areas[i - 1], self.areas[i]
        return lo + (hi - lo) * (area - a0) / (a1 - a0), "", near_lo or near_hi


def build_groups(rows, nearest: bool = False) -> dict[GroupId, Group]:
    """Index a table's rows (a DataFrame) into interpolation groups."""
    groups: dict[GroupId, Group] = {}
    channelwise = rows["kind"].isin(CHANNELWISE)
    gid_groups = np.where(channelwise, 0, rows["groups"].to_numpy())
    frame = rows.assign(_g=gid_groups)
    for (kind, kernel, stride, fused, g), part in frame.groupby(
            ["kind", "kernel", "stride", "fused_residual", "_g"], sort=False):
        surfaces = {}
        for (h, w), cell in part.groupby(["height", "width"], sort=False):
            surfaces[(int(h), int(w))] = Surface(cell["in_channels"].to_numpy(), cell["out_channels"].to_numpy(),
                                                 cell["latency_ms"].to_numpy(), kind in CHANNELWISE, nearest)
        groups[(str(kind), int(kernel), int(stride), bool(fused), int(g))] = Group(surfaces)
    return groups
