"""Latency tables: one measured ``ConvOp`` per CSV row, metadata in a JSON sidecar.

``latency_db/<name>.csv`` holds the rows; ``latency_db/<name>.json`` says what they mean
(device, dtype, batch, threads, how they were measured, the fitted per-network overhead).
Latencies are milliseconds for the whole batch, as the profiler measured them; the
predictor divides by the sidecar's batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import errno
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from ..atomic import atomic_write_bytes, atomic_write_text
from ..crashpoints import boundary
from ..errors import UserError
from ..ops import DEPTHWISE, REGULAR, ConvOp
from ..resources import LATENCY_DIR, resolve_file
from ..runfolder import lock_file
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
# How ops are priced (see interpolate): inside the measured hull only, with the nearest
# measured point outside it, or every op by TinyNAS's own predictor (imported TinyNAS tables).
TINYNAS = "tinynas"
EXTRAPOLATIONS = ("none", "nearest", TINYNAS)


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


# ----------------------------------------------------------------------------- checking
STATUSES = ("complete", "incomplete")
CLOCKS = ("cuda-events", "thread-cpu", "wall")
SHA256 = re.compile(r"[0-9a-f]{64}")


def _is_int(value, lo: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= lo


def _is_ms(value, positive: bool) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return False
    return value > 0 if positive else value >= 0


def _is_name(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _is_calibration(value) -> bool:
    if value is None:
        return True
    return isinstance(value, dict) and (value.get("nominal_ms") is None or _is_ms(value["nominal_ms"], True))


# Every sidecar field some code reads, with the range that makes physical sense; each is checked
# when present (REQUIRED_META says which must be). A value outside its range would not fail
# later: a negative overhead_ms prices small networks below zero, so every candidate passes
# any latency budget.
META_CHECKS = {
    "device": (_is_name, "a device name such as cpu or cuda"),
    "dtype": (_is_name, "a dtype name such as fp32"),
    "batch": (lambda v: _is_int(v, 1), "a positive integer"),
    "version": (lambda v: _is_int(v, 1) and v <= TABLE_VERSION, f"a format version from 1 to {TABLE_VERSION}"),
    "overhead_ms": (lambda v: _is_ms(v, False), "a finite number of milliseconds >= 0"),
    "scale": (lambda v: _is_ms(v, True), "a finite number > 0"),
    "extrapolation": (lambda v: v in EXTRAPOLATIONS, f"one of {', '.join(EXTRAPOLATIONS)}"),
    "status": (lambda v: v in STATUSES, f"one of {', '.join(STATUSES)}"),
    "rows": (lambda v: _is_int(v, 0), "the CSV's row count, an integer >= 0"),
    "sha256": (lambda v: isinstance(v, str) and SHA256.fullmatch(v) is not None,
               "the CSV's sha256, 64 lower-case hex digits"),
    "threads": (lambda v: v is None or _is_int(v, 1), "a positive integer"),
    "clock": (lambda v: v in CLOCKS, f"one of {', '.join(CLOCKS)}"),
    "warmup": (lambda v: _is_int(v, 0), "an integer >= 0"),
    "runs": (lambda v: _is_int(v, 1), "a positive integer"),
    "calibrated": (lambda v: isinstance(v, bool), "true or false"),
    "calibration": (_is_calibration, "an object whose nominal_ms is a positive number of milliseconds"),
    "device_name": (lambda v: isinstance(v, str), "a string"),
    "builds": (lambda v: isinstance(v, list), "a list"),
    "validation": (lambda v: isinstance(v, dict), "an object"),
    # latency calibrate's fits, one per machine: each prices networks there, so each is checked.
    "machines": (lambda v: isinstance(v, dict) and all(
        isinstance(e, dict) and _is_ms(e.get("scale"), True) and _is_ms(e.get("overhead_ms"), False)
        for e in v.values()), "an object of per-machine fits, each with a scale > 0 and an overhead_ms >= 0"),
}


def check_meta(meta: dict, source: str) -> None:
    """Refuse the first sidecar field outside its physical range (see ``META_CHECKS``)."""
    for key in REQUIRED_META:
        if key not in meta:
            raise UserError(source, key, "missing")
    if meta["format"] != TABLE_FORMAT:
        raise UserError(source, "format", f"expected {TABLE_FORMAT!r}, got {meta['format']!r}")
    if meta["units"] != UNITS:
        raise UserError(source, "units", f"latencies must be in {UNITS!r}, got {meta['units']!r}")
    for key, (ok, expected) in META_CHECKS.items():
        if key in meta and not ok(meta[key]):
            raise UserError(source, key, f"expected {expected}, got {meta[key]!r}")


def check_rows(frame: pd.DataFrame, source: str, lines=None, names: dict | None = None) -> pd.DataFrame:
    """``frame``'s ``COLUMNS`` typed, each value checked for physical sense.

    The first bad value is one ``UserError`` naming ``source``, its line (``lines[i]`` for row
    i; the CSV's own line numbers by default) and its column, called by ``names`` where given:
    an importer names the fields as its input file does. The loader and every importer share
    this, so an import never writes a table the loader refuses.
    """
    names = names or {}
    lines = np.arange(2, len(frame) + 2) if lines is None else np.asarray(lines)
    out = frame[list(COLUMNS)].copy()

    def refuse(bad, column: str, expected: str) -> None:
        bad = np.asarray(bad, dtype=bool)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            value = frame[column].iloc[i]
            value = value.item() if isinstance(value, np.generic) else value
            raise UserError(source, f"line {lines[i]}.{names.get(column, column)}",
                            f"expected {expected}, got {value!r}")

    refuse(~out["kind"].isin(KINDS), "kind", f"one of {', '.join(KINDS)}")
    for column in INT_COLUMNS + ("fused_residual",):
        values = pd.to_numeric(out[column], errors="coerce").astype("float64")
        refuse(~np.isfinite(values) | (values != values.round()), column, "an integer")
        out[column] = values.astype("int64")
    for column, positive in (("latency_ms", True), ("spread_ms", False)):
        values = pd.to_numeric(out[column], errors="coerce").astype("float64")
        refuse(~np.isfinite(values) | ((values <= 0) if positive else (values < 0)), column,
               "a positive, finite number of milliseconds" if positive else "a finite number of milliseconds >= 0")
        out[column] = values
    for column in ("in_channels", "out_channels", "kernel", "stride", "height", "width", "groups", "runs"):
        refuse(out[column] < 1, column, "a whole number >= 1")
    refuse(~out["fused_residual"].isin((0, 1)), "fused_residual", "0 or 1")
    channelwise = out["kind"].isin(CHANNELWISE)
    in_name = names.get("in_channels", "in_channels")
    refuse(channelwise & (out["out_channels"] != out["in_channels"]), "out_channels",
           f"{in_name} again on a depthwise or pooling op (it keeps its channels)")
    refuse(channelwise & (out["groups"] != out["in_channels"]), "groups",
           f"{in_name} on a depthwise or pooling op (one group per channel)")
    refuse(~channelwise & ((out["in_channels"] % out["groups"] != 0) | (out["out_channels"] % out["groups"] != 0)),
           "groups", "a divisor of both channel counts")
    return out.reset_index(drop=True)


def csv_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_sha256(path: str | os.PathLike, meta: dict, data: bytes) -> None:
    """The CSV is the one its sidecar was written with (tables older than the hash pass)."""
    if "sha256" in meta and csv_sha256(data) != meta["sha256"]:
        raise UserError(str(path), "", f"modified or damaged after it was written: its sha256 no longer matches "
                        f"the one in {sidecar_path(path).name}; if you edited it on purpose, "
                        f"`tinynas latency rehash {path}` checks its rows and accepts it")


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
    check_meta(meta, str(side))
    return meta


def read_csv_bytes(path: str | os.PathLike) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise UserError(str(path), "", "file not found") from None
    except OSError as err:
        raise UserError(str(path), "", f"cannot read the table: {err.strerror or err}") from None


def parse_rows(data: bytes, source: str) -> pd.DataFrame:
    """The CSV rows in ``data``, checked: right columns, physical values, each op once."""
    try:
        frame = pd.read_csv(io.BytesIO(data))
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise UserError(source, "", f"cannot read the table: {str(err).splitlines()[0]}") from None
    for column in FOREIGN_UNIT_COLUMNS:
        if column in frame.columns:
            raise UserError(source, column, "wrong units: tables store latency_ms (milliseconds per batch)")
    for column in COLUMNS:
        if column not in frame.columns:
            raise UserError(source, column, "missing column")
    frame = check_rows(frame, source)
    dup = frame.duplicated(list(KEY_COLUMNS))
    if dup.any():
        line = int(np.flatnonzero(dup.to_numpy())[0]) + 2
        raise UserError(source, f"line {line}", "duplicate op: each op may appear once")
    return frame


def read_rows(path: str | os.PathLike) -> pd.DataFrame:
    return parse_rows(read_csv_bytes(path), str(path))


def read_table_files(path: Path, verify: bool = True) -> tuple[dict, bytes, pd.DataFrame]:
    """(sidecar, CSV bytes, checked rows); ``verify``: the sidecar's sha256 and row count
    must match the CSV (``rehash`` reads without, to record new ones)."""
    meta = read_meta(path)
    data = read_csv_bytes(path)
    if verify:
        check_sha256(path, meta, data)
    rows = parse_rows(data, str(path))
    if verify and "rows" in meta and meta["rows"] != len(rows):
        raise UserError(str(sidecar_path(path)), "rows", f"says the table has {meta['rows']} rows, "
                        f"{path.name} holds {len(rows)}")
    return meta, data, rows


def load_table(path: str | os.PathLike, device: str | None = None, dtype: str | None = None,
               batch: int | None = None, allow_incomplete: bool = False) -> LatencyTable:
    """Read and check a table; ``device``/``dtype``/``batch`` must match it when given."""
    path = resolve_table_path(path)
    meta, _, rows = read_table_files(path)
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
@contextlib.contextmanager
def table_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold ``path`` for one writer; a second one fails at once, one line naming table and holder."""
    try:
        lock = lock_file(path, "latency table")
    except UserError as err:
        raise UserError(str(path), "", err.reason) from None
    try:
        yield
    finally:
        lock.release()


def write_meta(path: str | os.PathLike, meta: dict) -> None:
    """Write the sidecar (atomic); a value the loader would refuse is refused here instead."""
    check_meta(meta, str(sidecar_path(path)))
    atomic_write_text(sidecar_path(path), json.dumps(meta, indent=2, sort_keys=True) + "\n")


def seal_meta(meta: dict, data: bytes, rows: int) -> dict:
    """Record the CSV's sha256 (and its row count, where the sidecar keeps one) in ``meta``."""
    meta["sha256"] = csv_sha256(data)
    if "rows" in meta:
        meta["rows"] = rows
    return meta


def save_table(table: LatencyTable, path: str | os.PathLike) -> None:
    """Write rows and sidecar atomically (the sidecar last, so a table never lacks one long)."""
    data = table.rows[list(COLUMNS)].to_csv(index=False, float_format="%.6g", lineterminator="\n").encode("utf-8")
    with table_lock(path):
        atomic_write_bytes(path, data)
        write_meta(path, seal_meta(table.meta, data, len(table.rows)))
    table.path = str(path)


def update_meta(path: str | os.PathLike, **changes) -> dict:
    """Rewrite some sidecar fields in place (atomic, holding the table), e.g. the fitted overhead.

    The CSV must still match its sidecar, so nothing is stored onto a damaged table; an older
    table without a sha256 gets one here, its rows having just passed the loader's checks.
    """
    path = Path(path)
    with table_lock(path):
        meta, data, rows = read_table_files(path)
        meta.update(changes)
        write_meta(path, seal_meta(meta, data, len(rows)))
    return meta


def rehash_table(path: str | os.PathLike, rows: int | None = None) -> LatencyTable:
    """Accept a table's CSV as it is now, e.g. after an edit made on purpose.

    Every row is checked as the loader checks it; then the CSV's sha256 and row count are
    recorded in the sidecar, so the table loads again. A CSV whose row count differs from
    the one its sidecar records may be another table's (copied over this one): it is
    accepted only when ``rows`` states that count, an edit that added or removed rows.
    """
    path = resolve_table_path(path)
    with table_lock(path):
        meta, data, checked = read_table_files(path, verify=False)
        recorded = meta.get("rows")
        if rows is not None and rows != len(checked):
            raise UserError(str(path), "--rows", f"holds {len(checked)} rows, not {rows}")
        if recorded is not None and recorded != len(checked) and rows is None:
            raise UserError(str(path), "rows", f"holds {len(checked)} rows, its sidecar {sidecar_path(path).name} "
                            f"says {recorded}: it may be another table's CSV; if you added or removed rows on "
                            f"purpose, rehash with --rows {len(checked)}")
        write_meta(path, seal_meta(meta, data, len(checked)))
    return LatencyTable(checked, meta, str(path))


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
        boundary(path, "before")
        data = line.encode("utf-8")
        if os.write(fd, data) != len(data):  # a short write: the disk filled up mid-row
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        os.fsync(fd)
    except OSError as err:
        # os.write names no file; a full disk must say which table it could not extend.
        raise OSError(err.errno, err.strerror, str(path)) from None
    finally:
        os.close(fd)
    boundary(path, "after")
