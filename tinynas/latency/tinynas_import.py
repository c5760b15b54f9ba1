"""Import (and export) TinyNAS op-profiler tables.

TinyNAS writes one measured convolution per line:

    {Conv_type,Batch,In_C,In_H,In_W,Out_C,Kernel,Stride,ElmtFused} latency_ms

Conv_type is ``Regular`` or ``Depthwise``; ElmtFused 1 means the residual add is fused into
that conv; latency is for the whole batch; -1 marks a shape the profiler failed to time
(the import drops those lines; any other latency must be a positive number).
A table holds one batch size, so files mixing batches need ``batch`` to pick one.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import pandas as pd

from ..atomic import atomic_write_text
from ..errors import UserError
from ..ops import DEPTHWISE, REGULAR
from .table import (COLUMNS, EXTRAPOLATIONS, KEY_COLUMNS, TINYNAS, LatencyTable, base_meta, check_rows,
                    rows_frame, save_table)

LINE = re.compile(r"^\{\s*(Regular|Depthwise)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,"
                  r"\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*([01])\s*\}\s+(\S+)\s*$")
KINDS = {"Regular": REGULAR, "Depthwise": DEPTHWISE}
NAMES = {v: k for k, v in KINDS.items()}
FIELDS = ("kind", "batch", "in_channels", "height", "width", "out_channels", "kernel", "stride",
          "fused_residual", "latency_ms")
# Errors name a line's fields as the TinyNAS format's header does.
NAMES_IN_FILE = {"kind": "Conv_type", "in_channels": "In_C", "height": "In_H", "width": "In_W",
                 "out_channels": "Out_C", "kernel": "Kernel", "stride": "Stride", "fused_residual": "ElmtFused",
                 "latency_ms": "latency"}
# TinyNAS's profiler writes -1 for a shape it failed to time (its reader skips those lines).
FAILED = -1.0

TINYNAS_SOURCE = ("alibaba/lightweight-neural-architecture-search (TinyNAS) op-latency tables, "
                  "Apache-2.0, https://github.com/alibaba/lightweight-neural-architecture-search")


def read_tinynas(path: str | os.PathLike) -> pd.DataFrame:
    """One row per op line: ``FIELDS`` and the line's number (``line``), unchecked."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(source, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(source, "", f"cannot read: {err}") from None
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = LINE.match(line)
        if not match:
            raise UserError(source, f"line {number}", f"not a TinyNAS op line: {line.strip()[:80]!r}")
        kind, *ints, latency = match.groups()
        try:
            ms = float(latency)
        except ValueError:
            raise UserError(source, f"line {number}.latency", f"{latency!r} is not a number") from None
        records.append((number, KINDS[kind], *map(int, ints), ms))
    if not records:
        raise UserError(source, "", "no op lines found")
    return pd.DataFrame(records, columns=["line", *FIELDS])


def parse_tinynas(path: str | os.PathLike) -> list[tuple]:
    """(kind, batch, in_c, h, w, out_c, kernel, stride, fused, latency_ms) per op line."""
    return list(read_tinynas(path)[list(FIELDS)].itertuples(index=False, name=None))


def _chosen_batch(batches: Counter, batch: int | None, source: str) -> int:
    """``batch``, which the file must hold; without it, the file's only batch size."""
    if batch is None:
        if len(batches) > 1:
            listing = ", ".join(f"{b} ({n} ops)" for b, n in sorted(batches.items()))
            raise UserError(source, "batch", f"the file mixes batch sizes {listing}: choose one with --batch-size")
        return next(iter(batches))
    if batch not in batches:
        raise UserError(source, "batch", f"no ops at batch {batch} (found {', '.join(map(str, sorted(batches)))})")
    return batch


def import_tinynas(path: str | os.PathLike, out: str | os.PathLike | None = None, batch: int | None = None,
                   dtype: str | None = None, device: str = "cuda", device_name: str = "NVIDIA V100",
                   runtime: str = "TensorRT", extrapolation: str = TINYNAS, note: str = "") -> LatencyTable:
    """Convert a TinyNAS table; write it to ``out`` (CSV + sidecar) when given.

    Failed measurements (latency exactly -1, what TinyNAS's profiler writes for them) are
    dropped; every other line must hold a shape and a latency the loader accepts, or the import
    stops at it, naming the line. Repeated shapes keep their median. ``dtype`` defaults to fp16
    when the file name says so, else fp32. ``extrapolation`` defaults to ``tinynas``: the table
    prices ops as TinyNAS's own OpPredictor does (see interpolate), so a budget copied from a
    TinyNAS config means what it meant there; ``nearest`` and ``none`` use this project's
    interpolation, with the nearest measured op, or an error, outside the measured shapes.
    """
    source = str(path)
    if extrapolation not in EXTRAPOLATIONS:
        raise UserError("--extrapolation", "", f"expected one of {', '.join(EXTRAPOLATIONS)}")
    lines = read_tinynas(path)
    failed = lines["latency_ms"] == FAILED
    if failed.all():
        raise UserError(source, "", f"no usable op line: all {len(lines)} are failed measurements ({FAILED:g})")
    usable = lines[~failed]
    small = usable[usable["batch"] < 1]
    if len(small):
        raise UserError(source, f"line {small['line'].iloc[0]}.Batch",
                        f"expected a whole number >= 1, got {small['batch'].iloc[0]}")
    # The same checks the loader applies, on every line, before any is merged away.
    rows = check_rows(usable.assign(groups=usable["in_channels"].where(usable["kind"] == DEPTHWISE, 1),
                                    spread_ms=0.0, runs=1),
                      source, usable["line"], NAMES_IN_FILE)
    rows["batch"] = usable["batch"].to_numpy()

    batches = Counter(lines["batch"].tolist())
    batch = _chosen_batch(batches, batch, source)
    failed_here = int((failed & (lines["batch"] == batch)).sum())
    frame = rows[rows["batch"] == batch]
    if frame.empty:
        raise UserError(source, "batch", f"no usable op line at batch {batch}: all {failed_here} are failed "
                        f"measurements ({FAILED:g})")
    dtype = ("fp16" if "fp16" in Path(path).name.lower() else "fp32") if dtype is None else dtype

    keys = list(KEY_COLUMNS)
    merged = frame.groupby(keys, as_index=False, sort=True).agg(
        latency_ms=("latency_ms", "median"), spread_ms=("latency_ms", lambda s: float(s.max() - s.min())),
        runs=("latency_ms", "size"))
    duplicates = int(len(frame) - len(merged))
    rows = rows_frame(merged[list(COLUMNS)].values.tolist())
    meta = base_meta(device, dtype, batch, device_name=device_name, runtime=runtime,
                     source=TINYNAS_SOURCE, license="Apache-2.0", imported_from=Path(path).name,
                     method=(f"measured by TinyNAS's op profiler ({runtime}); imported by "
                             "tinynas latency import-tinynas; runs = repeated lines merged by median"),
                     import_stats={"lines": len(lines), "batch_lines": int(batches[batch]),
                                   "failed_dropped": failed_here, "duplicates_merged": duplicates,
                                   "rows": len(rows)},
                     extrapolation=extrapolation, status="complete")
    if note:
        meta["note"] = note
    table = LatencyTable(rows, meta, str(out) if out else source)
    if out is not None:
        save_table(table, out)
    return table


def export_tinynas(table: LatencyTable, path: str | os.PathLike) -> None:
    """Write a table back in TinyNAS's format (one line per conv, batch from the sidecar)."""
    lines = []
    for r in table.rows.itertuples(index=False):
        if r.kind not in NAMES:  # TinyNAS tables have no pooling rows
            continue
        lines.append(f"{{{NAMES[r.kind]},{table.batch},{r.in_channels},{r.height},{r.width},"
                     f"{r.out_channels},{r.kernel},{r.stride},{int(r.fused_residual)}}} {r.latency_ms:.6g}")
    atomic_write_text(path, "\n".join(lines) + "\n")
