"""Latency of ops the table did not measure, read off the ops it did.

A table's sidecar field ``extrapolation`` picks one of two rules.

``none`` and ``nearest`` (tables built here): rows are grouped by everything except channel
counts and size (kind, kernel, stride, fused, groups); inside a group, each measured size
holds a surface over (C_in, C_out):

- a full rectilinear grid (what ``tinynas latency build`` measures) -> multilinear
  interpolation (scipy ``RegularGridInterpolator``): exact on grid points, monotone between
  them when the table is, and exact for latencies bilinear in (C_in, C_out);
- scattered points -> piecewise-linear over a Delaunay triangulation (scipy
  ``LinearNDInterpolator``);
- a single channel axis (depthwise convs and pools, or a group with one C_in) -> 1-D linear.

A size between two measured sizes is interpolated linearly in pixel count (H x W) between
the surfaces above and below it. Outside the measured hull there is no answer (the caller
turns ``None`` into an error naming the op) unless the table says ``nearest``: the nearest
measured point in (log C_in, log C_out).

``tinynas`` (imported TinyNAS tables, ``TinyNASRule``): the prediction of TinyNAS's own
OpPredictor (alibaba/lightweight-neural-architecture-search,
tinynas/latency/op_profiler/predictor.py and util.py, Apache-2.0), so that a latency budget
copied from a TinyNAS config accepts and rejects the same networks it did there. TinyNAS
samples a few C_in/C_out ratios rather than a grid, and prices every op, measured or not,
through them:

- rows are keyed by (kind, stride, fused, kernel); rows at input size 4 are left out, as
  TinyNAS's reader leaves them out; only the input height counts (its tables are square);
  the points go in in the order of TinyNAS's files, repeated lines included, because that
  order decides how Qhull triangulates a grid (see ``TinyNASRule``);
- a regular conv's rows are split by ratio ``int(C_in / C_out * 100) / 100`` (C_in 3 gets
  the ratio 0 of its own); each ratio, and each depthwise key, holds a
  ``LinearNDInterpolator`` over (C_out, H), falling back to the nearest point
  (``NearestNDInterpolator``, rescaled axes) where that is NaN or negative;
- C_in 3 reads the ratio-0 surface; a C_in / C_out equal to a sampled ratio reads that
  ratio's surface; any other ratio evaluates every non-zero ratio's surface at (C_out, H),
  in ascending ratio, keeps a ratio only while the values rise (the first two always), and
  interpolates linearly between the kept ones, extrapolating past either end from the two
  nearest; a negative result becomes ``C_in / C_out / r0 * v0`` (r0, v0: the first kept);
- there is no exact lookup: a measured op whose ratio falls between the sampled ones is
  priced by that interpolation too, exactly as TinyNAS prices it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import LinearNDInterpolator, NearestNDInterpolator, RegularGridInterpolator
from scipy.spatial import QhullError

from ..ops import DEPTHWISE, REGULAR, ConvOp
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


# ----------------------------------------------------------------------------- TinyNAS's rule
# TinyNAS's reader drops every row measured at input size 4 (util.readDataBase).
TINYNAS_SKIPPED_SIZE = 4
# TinyNAS files convs that read C_in 3 (a network's RGB input) under a ratio of their own.
TINYNAS_RGB = 3
TINYNAS_KINDS = (REGULAR, DEPTHWISE)

TinyNASKey = tuple  # (kind, stride, fused, kernel): TinyNAS's "Conv_type Stride ElmtFused K"


def tinynas_key(op: ConvOp) -> TinyNASKey:
    return (op.kind, op.stride, op.fused_residual, op.kernel)


def tinynas_ratio(cin: int, cout: int) -> float:
    """The ratio a regular conv is filed under: C_in / C_out cut to two decimals, 0 for C_in 3.

    Cut, not rounded, and in float arithmetic, as TinyNAS computes it: 29/100 files under
    0.28, and only a C_in / C_out that equals a key exactly reads that key's surface.
    """
    return 0.0 if cin == TINYNAS_RGB else int(cin / cout * 100) / 100


class TinyNASSurface:
    """Latency over (C_out, H): linear inside the triangulation, else the nearest point."""

    def __init__(self, cout: np.ndarray, height: np.ndarray, ms: np.ndarray):
        points = np.column_stack([cout, height]).astype(float)
        values = ms.astype(float)
        try:
            self._linear = LinearNDInterpolator(points, values)
        except (QhullError, ValueError):
            # Too few or collinear points (TinyNAS could not load such a table at all): every
            # answer then comes from the nearest point.
            self._linear = None
        self._nearest = NearestNDInterpolator(points, values, rescale=True)
        # A search asks the same (C_out, H) for many C_in: each is one scipy call only once.
        self._memo: dict[tuple[int, int], float] = {}

    def __call__(self, cout: int, height: int) -> float:
        value = self._memo.get((cout, height))
        if value is None:
            value = float("nan") if self._linear is None else float(self._linear([[cout, height]])[0])
            if np.isnan(value) or value < 0:
                value = float(self._nearest([[cout, height]])[0])
            self._memo[(cout, height)] = value
        return value


class TinyNASEntry:
    """The surfaces of one key: one for a depthwise conv, one per ratio for a regular conv."""

    def __init__(self, kind: str, part):
        self.kind = kind
        if kind == DEPTHWISE:
            self.surface = TinyNASSurface(part["out_channels"].to_numpy(), part["height"].to_numpy(),
                                          part["latency_ms"].to_numpy())
            return
        ratio = [tinynas_ratio(int(a), int(b)) for a, b in zip(part["in_channels"], part["out_channels"])]
        self.ratios: dict[float, TinyNASSurface] = {}
        for r, cell in part.assign(_ratio=ratio).groupby("_ratio", sort=True):
            self.ratios[float(r)] = TinyNASSurface(cell["out_channels"].to_numpy(), cell["height"].to_numpy(),
                                                   cell["latency_ms"].to_numpy())
        self.spread = [r for r in sorted(self.ratios) if r != 0.0]  # ratio 0 never joins the 1-D fit

    def value(self, cin: int, cout: int, height: int) -> tuple[float | None, str]:
        if self.kind == DEPTHWISE:
            return self.surface(cout, height), ""
        if cin == TINYNAS_RGB:
            surface = self.ratios.get(0.0)
            if surface is None:
                return None, f"no op reading {TINYNAS_RGB} channels was measured (TinyNAS prices those apart)"
            return surface(cout, height), ""
        ratio = cin / cout
        surface = self.ratios.get(ratio)
        if surface is not None:
            return surface(cout, height), ""
        xs, ys = [], []
        for r in self.spread:
            v = self.ratios[r](cout, height)
            # TinyNAS keeps the values rising along the ratio axis, dropping a ratio that breaks it.
            if len(xs) < 2 or v > ys[-1]:
                xs.append(r)
                ys.append(v)
        if len(xs) < 2:
            return None, f"TinyNAS's rule needs two sampled C_in/C_out ratios, the table has {len(xs)}"
        # scipy interp1d(kind="linear", fill_value="extrapolate"), written out: the segment
        # holding the ratio, or the first/last one past either end.
        i = min(max(bisect.bisect_left(xs, ratio), 1), len(xs) - 1)
        slope = (ys[i] - ys[i - 1]) / (xs[i] - xs[i - 1])
        value = slope * (ratio - xs[i - 1]) + ys[i - 1]
        if value < 0:
            value = ratio / xs[0] * ys[0]
        return value, ""


class TinyNASRule:
    """TinyNAS's OpPredictor over a table's rows (see the module docstring); keys built on first use.

    ``repeats``: the rows were imported from a TinyNAS file, and a row's ``runs`` counts the
    lines merged into it. TinyNAS kept every line as a point of its own, and a repeated point
    changes how Qhull triangulates the surface around it (not only the value there), so each
    such row goes in ``runs`` times, where TinyNAS's file held the repeats: after the whole
    block of its input size (the DAMO-YOLO file measured size 6 twice, one size block after
    the other). The repeats carry the merged median; TinyNAS's own values of them differ by
    the row's ``spread_ms``, which moves only ops next to such a point.
    """

    def __init__(self, rows, repeats: bool = False):
        usable = (rows["height"] != TINYNAS_SKIPPED_SIZE) & rows["kind"].isin(TINYNAS_KINDS)
        usable &= (rows["kind"] != REGULAR) | (rows["groups"] == 1)
        points = rows[usable].reset_index(drop=True)
        if repeats:
            points = points.loc[points.index.repeat(points["runs"])]
            points = points.assign(_pass=points.groupby(level=0).cumcount())
        else:
            points = points.assign(_pass=0)
        # Qhull splits each rectangular cell of a (C_out, H) grid along the diagonal the point
        # order leads it to, and the two diagonals give different latencies inside the cell
        # (up to 10% on the DAMO-YOLO table): the points go in as TinyNAS's profiler writes its files,
        # input size descending, then repeat pass, then C_out and C_in descending.
        ordered = points.sort_values(["height", "_pass", "out_channels", "in_channels"],
                                     ascending=[False, True, False, False], kind="mergesort")
        self._parts = {(str(kind), int(stride), bool(fused), int(kernel)): part
                       for (kind, stride, fused, kernel), part in ordered.groupby(
                           ["kind", "stride", "fused_residual", "kernel"], sort=False)}
        self._entries: dict[TinyNASKey, TinyNASEntry] = {}

    def value(self, op: ConvOp) -> tuple[float | None, str]:
        """(latency or None, why None)."""
        if op.kind not in TINYNAS_KINDS or (op.kind == REGULAR and op.groups != 1):
            return None, "TinyNAS's rule prices only regular and depthwise convolutions"
        key = tinynas_key(op)
        entry = self._entries.get(key)
        if entry is None:
            part = self._parts.get(key)
            if part is None:
                return None, "no op of this kind, kernel, stride and residual fusion was measured"
            entry = self._entries[key] = TinyNASEntry(op.kind, part)
        return entry.value(op.in_channels, op.out_channels, op.height)
