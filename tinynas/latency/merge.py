"""``merge_shards``: join the shards of one grid, measured on identical boards, into one table.

A shard (``build_table(..., shard=(i, n))``) records its part of the grid and the grid itself
(spaces, resolution, channel step, and the fingerprint of every op key), so the merge checks,
from the shards alone, that they cover the grid exactly once: no shard twice, none missing,
no op in two shards, each shard holding exactly its part. ``allow_partial`` accepts missing
or unfinished shards and records what is missing; the table is then ``incomplete``, and
``tinynas latency build`` with the same spaces and ``--out`` measures the missing ops into it.

Shards are rows of one table only if they were measured the same way on the same kind of
chip: every setting that changes a number (``MATCH_KEYS``) must agree, or the merge is
refused naming the shard and the field.

Calibrated (CPU) shards each carry their own nominal reference time: every board fixes it
when its shard starts, and identical boards differ by a few percent (binning, cooling, what
else they run). Their rows are rescaled to one nominal, not refused. A calibrated row is the
op's time *relative to the reference conv* times the nominal, so the ratio is what a board
measured and the nominal only picks the unit: rescaling by nominal/own nominal gives exactly
what that board would have written with the common nominal, the same conversion a resumed
build or ``validate`` applies on another day. The common nominal is the shards' median (one
unusually slow or fast board does not set the scale). Nominals further apart than
``max_nominal_ratio`` are refused: that is no longer board-to-board spread but another chip,
clock or a loaded board, for which the ratio itself is not to be trusted.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..errors import UserError
from ..runfolder import check_new_file
from .shards import SPLIT, ops_sha256
from .table import (KEY_COLUMNS, SHA256, LatencyTable, base_meta, csv_sha256, device_type, op_from_row,
                    op_text, read_table_files, sidecar_path, save_table)

# Sidecar fields that change what a row means; shards must agree on each (a missing field
# agrees only with a missing field). ``runtime`` is recorded by builds that run a deployment
# runtime; ``calibration`` is compared apart (its nominal may differ, see the module doc).
MATCH_KEYS = ("version", "device_name", "dtype", "batch", "threads", "clock", "allocator", "warmup", "runs",
              "act", "calibrated", "torch_version", "runtime")
# What defines the grid the shards are parts of.
GRID_KEYS = ("split", "count", "spaces", "resolution", "channel_step", "grid_ops", "grid_sha256")
MAX_NOMINAL_RATIO = 1.25


@dataclass
class Shard:
    path: Path
    meta: dict
    rows: pd.DataFrame
    sha256: str

    @property
    def source(self) -> str:
        return str(sidecar_path(self.path))

    @property
    def record(self) -> dict:
        return self.meta["shard"]

    @property
    def label(self) -> str:
        return f"shard {self.record['index']}/{self.record['count']}"


def _is_int(value, lo: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= lo


def _check_record(record, source: str) -> None:
    """The sidecar's ``shard`` is one a build wrote (the loader does not check it)."""
    if record is None:
        raise UserError(source, "shard", "not a shard: build one with `tinynas latency build --shard I/N`")
    if not isinstance(record, dict):
        raise UserError(source, "shard", f"expected an object, got {record!r}")
    # In this order: each bound uses a field already checked.
    checks = {"split": (lambda v: v == SPLIT, f"{SPLIT!r} (shards split by this tinynas version)"),
              "grid_ops": (lambda v: _is_int(v, 1), "a positive integer"),
              "count": (lambda v: _is_int(v, 1) and v <= record["grid_ops"], "an integer from 1 to grid_ops"),
              "index": (lambda v: _is_int(v, 1) and v <= record["count"], "an integer from 1 to count"),
              "ops": (lambda v: _is_int(v, 0) and v <= record["grid_ops"], "an integer from 0 to grid_ops"),
              "spaces": (lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v), "a list of names"),
              "grid_sha256": (lambda v: isinstance(v, str) and SHA256.fullmatch(v), "64 lower-case hex digits"),
              "ops_sha256": (lambda v: isinstance(v, str) and SHA256.fullmatch(v), "64 lower-case hex digits")}
    for key, (ok, expected) in checks.items():
        if key not in record:
            raise UserError(source, f"shard.{key}", "missing")
        if not ok(record[key]):
            raise UserError(source, f"shard.{key}", f"expected {expected}, got {record[key]!r}")


def read_shard(path: str | os.PathLike) -> Shard:
    """A shard's sidecar and rows, checked as the loader checks any table, plus its shard record."""
    path = Path(path)
    meta, data, rows = read_table_files(path)
    _check_record(meta.get("shard"), str(sidecar_path(path)))
    return Shard(path, meta, rows, csv_sha256(data))


def shard_status(path: str | os.PathLike) -> str | None:
    """``complete``/``incomplete`` for a readable shard; None for one absent or unreadable."""
    try:
        return read_shard(path).meta.get("status", "complete")
    except UserError:
        return None


def _nominal(shard: Shard):
    return (shard.meta.get("calibration") or {}).get("nominal_ms")


def _check_same(shards: list[Shard], max_nominal_ratio: float) -> None:
    """Every shard is a part of the first one's grid, measured the same way."""
    first = shards[0]
    for shard in shards[1:]:
        def differs(field: str, mine, theirs) -> None:
            if mine != theirs:
                raise UserError(shard.source, field, f"{mine!r} here, {theirs!r} in {first.path.name}: only shards "
                                "of one grid measured the same way on identical devices merge")
        differs("device", device_type(shard.meta["device"]), device_type(first.meta["device"]))
        for key in MATCH_KEYS:
            differs(key, shard.meta.get(key), first.meta.get(key))
        mine, theirs = shard.meta.get("calibration") or {}, first.meta.get("calibration") or {}
        for key in sorted((set(mine) | set(theirs)) - {"nominal_ms"}):
            differs(f"calibration.{key}", mine.get(key), theirs.get(key))
        if (_nominal(shard) is None) != (_nominal(first) is None):  # rescaled when both have one
            differs("calibration.nominal_ms", _nominal(shard), _nominal(first))
        for key in GRID_KEYS:
            differs(f"shard.{key}", shard.record.get(key), first.record.get(key))
    nominals = [(_nominal(s), s) for s in shards if _nominal(s) is not None]
    if nominals:
        low, high = min(nominals, key=lambda n: n[0]), max(nominals, key=lambda n: n[0])
        if high[0] > max_nominal_ratio * low[0]:
            raise UserError(high[1].source, "calibration.nominal_ms",
                            f"{high[0]:.4g} ms here, {low[0]:.4g} ms in {low[1].path.name}: more than "
                            f"{max_nominal_ratio:g}x apart, so not identical boards at rest (rebuild this shard "
                            "on a quiet board, or raise max_nominal_ratio if the boards are the same)")


def _ops(rows: pd.DataFrame) -> list:
    return [op_from_row(r) for r in rows.itertuples(index=False)]


def _check_cover(shards: list[Shard], allow_partial: bool) -> tuple[list[int], list[int]]:
    """Refuse shards given twice, ops in two shards, a shard holding other ops than its part,
    and (unless ``allow_partial``) missing or unfinished shards. Returns the indices of the
    missing shards and of the unfinished ones."""
    seen: dict[int, Shard] = {}
    owner: dict = {}
    unfinished: list[int] = []
    for shard in shards:
        index = shard.record["index"]
        if index in seen:
            raise UserError(shard.source, "shard.index", f"{shard.label} is also {seen[index].path}: "
                            "give each shard once")
        seen[index] = shard
        ops = _ops(shard.rows)
        for line, op in enumerate(ops, 2):
            if op in owner:
                raise UserError(str(shard.path), f"line {line}", f"{op_text(op)} is also measured in "
                                f"{owner[op].path}: shards overlap")
            owner[op] = shard
        have, want = len(ops), shard.record["ops"]
        # Only a shard holding all its ops can be checked against its part's fingerprint; one
        # holding fewer is checked by the fingerprint of the grid once a resumed build completes it.
        if have > want or (have == want and ops_sha256(ops) != shard.record["ops_sha256"]):
            raise UserError(str(shard.path), "", f"its rows are not the ops of {shard.label} that its sidecar "
                            "records (edited, or split by another version): rebuild this shard")
        if have < want:
            if not allow_partial:
                raise UserError(shard.source, "status", f"{shard.label} holds {have} of its {want} ops: finish "
                                "its build (run the same command again), or merge with --allow-partial")
            unfinished.append(index)
    count = shards[0].record["count"]
    missing = [i for i in range(1, count + 1) if i not in seen]
    if missing and not allow_partial:
        listing = ", ".join(f"{i}/{count}" for i in missing)
        raise UserError(shards[0].source, "shard.count", f"the grid has {count} shards and {listing} "
                        f"{'is' if len(missing) == 1 else 'are'} missing: give every shard, or merge with "
                        "--allow-partial")
    return missing, unfinished


def _joined_rows(read: list, nominal: float | None) -> tuple[pd.DataFrame, list[dict]]:
    """Every shard's rows (calibrated ones rescaled to the common ``nominal``), sorted, and
    where each shard's came from."""
    frames, provenance = [], []
    for shard in read:
        factor = nominal / _nominal(shard) if nominal is not None else 1.0
        rows = shard.rows.copy()
        if factor != 1.0:
            rows[["latency_ms", "spread_ms"]] *= factor
        frames.append(rows)
        provenance.append({"file": shard.path.name, "index": shard.record["index"], "rows": len(shard.rows),
                           "missing_ops": shard.record["ops"] - len(shard.rows),
                           "status": shard.meta.get("status", "complete"), "sha256": shard.sha256,
                           "date": shard.meta.get("date"), "python_version": shard.meta.get("python_version"),
                           "nominal_ms": _nominal(shard), "scaled_by": factor})
    return pd.concat(frames).sort_values(list(KEY_COLUMNS)).reset_index(drop=True), provenance


def merge_shards(shards: Sequence[str | os.PathLike], out: str | os.PathLike, allow_partial: bool = False,
                 force: bool = False, max_nominal_ratio: float = MAX_NOMINAL_RATIO) -> LatencyTable:
    """Join the shard tables ``shards`` into ``out`` (CSV + sidecar, sealed, written under its lock).

    Refused, one line naming the shard file and the field: settings or grids that differ,
    a shard given twice, an op in two shards, a shard whose rows are not its part, and unless
    ``allow_partial``, a missing or unfinished shard. ``out`` must be new unless ``force``.
    """
    if not shards:
        raise UserError("SHARD", "", "give the shard tables to merge")
    if not max_nominal_ratio >= 1:
        raise UserError("--max-nominal-ratio", "", f"expected a ratio >= 1, got {max_nominal_ratio!r}")
    out = check_new_file(out, "--out", force)
    for path in shards:
        if Path(path).resolve() == out.resolve():
            raise UserError(str(out), "--out", "is one of the shards: write the merged table to a new file")
    read = [read_shard(path) for path in shards]
    _check_same(read, max_nominal_ratio)
    missing, unfinished = _check_cover(read, allow_partial)
    read.sort(key=lambda s: s.record["index"])

    first = read[0].meta
    nominals = [_nominal(s) for s in read if _nominal(s) is not None]
    nominal = statistics.median(nominals) if nominals else None
    rows, provenance = _joined_rows(read, nominal)

    record = read[0].record
    devices = {s.meta["device"] for s in read}
    meta = base_meta(first["device"] if len(devices) == 1 else device_type(first["device"]), first["dtype"],
                     first["batch"])
    for key in MATCH_KEYS + ("method", "cudnn_benchmark"):
        if key in first:
            meta[key] = first[key]
    if nominal is not None:
        meta["calibration"] = {**first["calibration"], "nominal_ms": nominal}
    meta["builds"] = [{"spaces": record["spaces"], "resolution": record["resolution"],
                       "channel_step": record["channel_step"], "grid_ops": record["grid_ops"]}]
    meta["merged"] = {"split": record["split"], "count": record["count"], "grid_sha256": record["grid_sha256"],
                      "shards": provenance, "missing_shards": missing, "unfinished_shards": sorted(unfinished),
                      "missing_ops": record["grid_ops"] - len(rows),
                      "method": "rows of each shard scaled by the common nominal_ms over its own "
                                "(calibrated rows are ratios to the reference conv)" if nominal is not None
                                else "rows as measured"}
    meta["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    complete = len(rows) == record["grid_ops"]
    if len(rows) > record["grid_ops"] or (complete and ops_sha256(_ops(rows)) != record["grid_sha256"]):
        raise UserError(read[0].source, "shard.grid_sha256", "the shards' ops are not the grid they record: "
                        "rebuild the shards with one tinynas version")
    meta["status"] = "complete" if complete else "incomplete"
    meta["rows"] = len(rows)
    table = LatencyTable(rows, meta, str(out))
    save_table(table, out)
    return table
