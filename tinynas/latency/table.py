"""Latency tables: one measured ``ConvOp`` per CSV row, metadata in a JSON sidecar.

``latency_db/<name>.csv`` holds the rows; ``latency_db/<name>.json`` says what they mean
(device, dtype, batch, threads, how they were measured, the fitted per-network overhead).
Latencies are milliseconds for the whole batch, as the profiler measured them; the
predictor divides by the sidecar's batch.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_write_text
from ..errors import UserError
from ..ops import DEPTHWISE, REGULAR, ConvOp
from ..resources import LATENCY_DIR, resolve_file
from .netops import AVGPOOL, CHANNELWISE

TABLE_FORMAT = "tinynas-latency-table"
TABLE_VERSION = 1
UNITS = "ms"

KEY_COLUMNS = ("kind", "in_channels", "out_channels", "kernel", "stride", "height", "width",
               "fused_residual", "groups")
VALUE_COLUMNS = ("latency_ms", "spread_ms", "runs")
COLUMNS = KEY_COLUMNS + VALUE_COLUMNS
INT_COLUMNS = ("in_channels", "out_channels", "kernel", "stride", "height", "width", "groups", "runs")
KINDS = (REGULAR, DEPTHWISE, AVGPOOL)
# Columns that would mean someone wrote another unit: refuse rather than misread by 1000x.
FOREIGN_UNIT_COLUMNS = ("latency_s", "latency_us", "latency_ns", "latency")
REQUIRED_META = ("format", "units", "device", "dtype", "batch")
# What to do for an op outside the measured hull: fail, or take the nearest measured point.
EXTRAPOLATIONS = ("none", "nearest")


@dataclass
class LatencyTable:
    """Measured ops (``rows``, a DataFrame with ``COLUMNS``) and their metadata."""

    rows: pd.DataFrame
    meta: dict = field(default_factory=dict)
    path: str = "<table>"

    @property
    def batch(self) -> int:
        return int(self.meta["batch"])

    @property
    def device(self) -> str:
        return str(self.meta["device"])

    @property
    def dtype(self) -> str:
        return str(self.meta["dtype"])

    def ops(self) -> list[ConvOp]:
        return [op_from_row(r) for r in self.rows.itertuples(index=False)]

    def latency_by_op(self) -> dict[ConvOp, float]:
        return {op_from_row(r): float(r.latency_ms) for r in self.rows.itertuples(index=False)}

    def __len__(self) -> int:
        return len(self.rows)


def op_from_row(row) -> ConvOp:
    return ConvOp(str(row.kind), int(row.in_channels), int(row.out_channels), int(row.kernel),
                  int(row.stride), int(row.height), int(row.width), bool(row.fused_residual),
                  int(row.groups))


def op_row(op: ConvOp) -> list:
    return [op.kind, op.in_channels, op.out_channels, op.kernel, op.stride, op.height, op.width,
            int(op.fused_residual), op.groups]


def op_text(op: ConvOp) -> str:
    """A one-line human name for an op, used in error messages."""
    fused = " +residual" if op.fused_residual else ""
    groups = f" g{op.groups}" if op.groups != 1 and op.kind not in CHANNELWISE else ""
    return (f"{op.kind} k{op.kernel} s{op.stride} {op.in_channels}->{op.out_channels}"
            f"{groups} @{op.height}x{op.width}{fused}")


def sidecar_path(csv_path: str | os.PathLike) -> Path:
    return Path(csv_path).with_suffix(".json")


def resolve_table_path(text: str | os.PathLike) -> Path:
    """A table path, or the name of a shipped table (``cpu-fp32``, ``v100-trt-fp16``)."""
    return resolve_file(str(text), LATENCY_DIR, (".csv",), "latency table")


def rows_frame(records: list[list]) -> pd.DataFrame:
    frame = pd.DataFrame(records, columns=list(COLUMNS))
    return frame.astype({c: "int64" for c in INT_COLUMNS} | {"fused_residual": "int64"})


# ----------------------------------------------------------------------------- reading
def read_meta(path: str | os.PathLike) -> dict:
    side = sidecar_path(path)
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(str(side), "", "sidecar metadata file not found (every table needs one)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(str(side), "", f"cannot read sidecar: {err}") from None
    if not isinstance(meta, dict):
        raise UserError(str(side), "", "sidecar must be a JSON object")
    for key in REQUIRED_META:
        if key not in meta:
            raise UserError(str(side), key, "missing")
    if meta["format"] != TABLE_FORMAT:
        raise UserError(str(side), "format", f"expected {TABLE_FORMAT!r}, got {meta['format']!r}")
    if meta["units"] != UNITS:
        raise UserError(str(side), "units", f"latencies must be in {UNITS!r}, got {meta['units']!r}")
    batch = meta["batch"]
    if not isinstance(batch, int) or isinstance(batch, bool) or batch <= 0:
        raise UserError(str(side), "batch", f"must be a positive integer, got {batch!r}")
    for key in ("overhead_ms", "scale"):
        value = meta.get(key, 0.0 if key == "overhead_ms" else 1.0)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise UserError(str(side), key, f"must be a finite number, got {value!r}")
    if meta.get("extrapolation", "none") not in EXTRAPOLATIONS:
        raise UserError(str(side), "extrapolation", f"expected one of {', '.join(EXTRAPOLATIONS)}, "
                        f"got {meta['extrapolation']!r}")
    if meta.get("scale", 1.0) <= 0:
        raise UserError(str(side), "scale", f"must be positive, got {meta['scale']!r}")
    return meta


def read_rows(path: str | os.PathLike) -> pd.DataFrame:
    """The CSV rows, checked: right columns, integer keys, known kinds, positive latencies."""
    source = str(path)
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise UserError(source, "", "file not found") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise UserError(source, "", f"cannot read the table: {str(err).splitlines()[0]}") from None
    for column in FOREIGN_UNIT_COLUMNS:
        if column in frame.columns:
            raise UserError(source, column, "wrong units: tables store latency_ms (milliseconds per batch)")
    for column in COLUMNS:
        if column not in frame.columns:
            raise UserError(source, column, "missing column")
    frame = frame[list(COLUMNS)]
    for column in INT_COLUMNS + ("fused_residual",):
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() | (values != values.round())
        if bad.any():
            line = int(np.flatnonzero(bad.to_numpy())[0]) + 2
            raise UserError(source, f"line {line}.{column}", f"expected an integer, got {frame[column].iloc[line - 2]!r}")
        frame[column] = values.astype("int64")
    for column in ("latency_ms", "spread_ms"):
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() | ~np.isfinite(values) | (values < 0) | ((values == 0) & (column == "latency_ms"))
        if bad.any():
            line = int(np.flatnonzero(bad.to_numpy())[0]) + 2
            raise UserError(source, f"line {line}.{column}",
                            f"expected a positive number of milliseconds, got {frame[column].iloc[line - 2]!r}")
        frame[column] = values.astype("float64")
    bad_kind = ~frame["kind"].isin(KINDS)
    if bad_kind.any():
        line = int(np.flatnonzero(bad_kind.to_numpy())[0]) + 2
        raise UserError(source, f"line {line}.kind", f"expected one of {', '.join(KINDS)}, got {frame['kind'].iloc[line - 2]!r}")
    positive = ["in_channels", "out_channels", "kernel", "stride", "height", "width", "groups"]
    bad = (frame[positive] <= 0).any(axis=1) | ~frame["fused_residual"].isin((0, 1))
    if bad.any():
        line = int(np.flatnonzero(bad.to_numpy())[0]) + 2
        raise UserError(source, f"line {line}", "channels, kernel, stride, size and groups must be positive "
                        "and fused_residual 0 or 1")
    dup = frame.duplicated(list(KEY_COLUMNS))
    if dup.any():
        line = int(np.flatnonzero(dup.to_numpy())[0]) + 2
        raise UserError(source, f"line {line}", "duplicate op: each op may appear once")
    return frame.reset_index(drop=True)


def load_table(path: str | os.PathLike, device: str | None = None, dtype: str | None = None,
               batch: int | None = None, allow_incomplete: bool = False) -> LatencyTable:
    """Read and check a table; ``device``/``dtype``/``batch`` must match it when given."""
    path = resolve_table_path(path) if not Path(path).is_file() else Path(path)
    meta = read_meta(path)
    rows = read_rows(path)
    source = str(sidecar_path(path))
    if not allow_incomplete and meta.get("status", "complete") != "complete":
        raise UserError(source, "status", f"the table is {meta.get('status')!r}: its build did not finish "
                        "(run `tinynas latency build` again with the same --out to resume it)")
    if device is not None and device_type(device) != device_type(meta["device"]):
        raise UserError(source, "device", f"the table was measured on {meta['device']!r}, asked for {device!r}")
    if dtype is not None and dtype != meta["dtype"]:
        raise UserError(source, "dtype", f"the table holds {meta['dtype']!r} latencies, asked for {dtype!r}")
    if batch is not None and batch != meta["batch"]:
        raise UserError(source, "batch", f"the table was measured at batch {meta['batch']}, asked for {batch}")
    if len(rows) == 0 and not allow_incomplete:
        raise UserError(str(path), "", "the table has no rows")
    return LatencyTable(rows, meta, str(path))


def device_type(device: str) -> str:
    """``cuda:1`` -> ``cuda``: tables are per device kind; the name is in ``device_name``."""
    return str(device).split(":", 1)[0].lower()


# ----------------------------------------------------------------------------- writing
def write_meta(path: str | os.PathLike, meta: dict) -> None:
    atomic_write_text(sidecar_path(path), json.dumps(meta, indent=2, sort_keys=True) + "\n")


def save_table(table: LatencyTable, path: str | os.PathLike) -> None:
    """Write rows and sidecar atomically (the sidecar last, so a table never lacks one long)."""
    text = table.rows[list(COLUMNS)].to_csv(index=False, float_format="%.6g", lineterminator="\n")
    atomic_write_text(path, text)
    write_meta(path, table.meta)
    table.path = str(path)


def update_meta(path: str | os.PathLike, **changes) -> dict:
    """Rewrite some sidecar fields in place (atomic), e.g. the fitted overhead."""
    meta = read_meta(path)
    meta.update(changes)
    write_meta(path, meta)
    return meta


def base_meta(device: str, dtype: str, batch: int, **extra) -> dict:
    meta = {"format": TABLE_FORMAT, "version": TABLE_VERSION, "units": UNITS,
            "latency_is": "milliseconds for the whole batch; divide by batch for per image",
            "device": device, "dtype": dtype, "batch": batch, "overhead_ms": 0.0, "scale": 1.0}
    meta.update(extra)
    return meta


# ----------------------------------------------------------------------------- appending
HEADER = ",".join(COLUMNS) + "\n"


def format_row(op: ConvOp, latency_ms: float, spread_ms: float, runs: int) -> str:
    values = op_row(op) + [f"{latency_ms:.6g}", f"{spread_ms:.6g}", runs]
    return ",".join(str(v) for v in values) + "\n"


def start_rows_file(path: str | os.PathLike) -> None:
    """Create the CSV with its header, or drop a torn last line left by a killed build."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        atomic_write_text(path, HEADER)
        return
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        # A row is written with one write() call; a kill mid-write leaves at most one partial
        # line, which is measured again on resume.
        keep = data.rfind(b"\n") + 1
        with open(path, "r+b") as handle:
            handle.truncate(keep)
    if path.stat().st_size == 0:
        atomic_write_text(path, HEADER)


def append_row(path: str | os.PathLike, line: str) -> None:
    """Append one complete row with a single write and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
