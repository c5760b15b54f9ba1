"""Dividing a latency grid among identical boards: which ops each shard of a build measures.

``build_table(..., shard=(i, n))`` measures shard ``i`` of ``n`` of the grid; ``merge.py`` joins
the shards into one table; ``fleet.py`` runs the shards as Ray tasks. The split is a pure
function of the grid, so every board computes its own part without talking to the others: the
ops are sorted by an estimate of the time they take to measure, then each goes to the shard
with the least estimated time so far (longest-processing-time-first; ties to the lowest
index). Measurement time, not op count, is what a fleet waits for: one regular conv at 320x320
costs as much as a thousand at 20x20. All arithmetic is on integers and the grid is a sorted
set, so the split is the same on any machine, whatever the order the spaces were given in.
"""

from __future__ import annotations

import hashlib
import heapq
import re
from typing import Sequence

from ..errors import UserError
from ..ops import ConvOp
from .table import op_row

# Recorded in every shard: shards split by another rule (another tinynas version) never merge.
SPLIT = "lpt-estimated-time-v1"
# The estimate is in multiply-accumulate equivalents, fitted on the shipped CPU table's 3944
# measured ops (latency ~ 2.2e-8 ms per MAC + 5.6e-7 ms per element moved, so an element
# weighs ~25 MACs) and on timing builds here: each op also pays ~30 ms that do not depend on
# its size (the calibration reference before and after it, building the module), ~1e8 MACs
# at the 13 runs of a default build. Only the ratios matter; a rough fit balances shards to
# a few percent (see tests/test_latency_shard.py).
ELEMENT_MACS = 25
OP_MACS = 100_000_000


def op_cost(op: ConvOp) -> int:
    """Estimated time to measure ``op``, in MAC equivalents (see ``ELEMENT_MACS``)."""
    outputs = op.out_channels * op.out_height * op.out_width
    macs = outputs * (op.in_channels // op.groups) * op.kernel ** 2
    elements = op.in_channels * op.height * op.width + outputs * (1 + op.fused_residual)
    return macs + ELEMENT_MACS * elements + OP_MACS


def parse_shard(shard: str | Sequence[int]) -> tuple[int, int]:
    """``"2/4"`` or ``(2, 4)`` -> ``(2, 4)``: shard 2 of 4, counted from 1."""
    if isinstance(shard, str):
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", shard)
        if match is None:
            raise UserError("--shard", "", f"expected I/N such as 2/4 (shard I of N, from 1), got {shard!r}")
        index, count = int(match[1]), int(match[2])
    else:
        try:
            index, count = (int(v) for v in shard)
        except (TypeError, ValueError):
            raise UserError("--shard", "", f"expected (index, count) such as (2, 4), got {shard!r}") from None
    if not 1 <= index <= count:
        raise UserError("--shard", "", f"shard {index}/{count}: the index runs from 1 to the count")
    return index, count


def split_ops(ops: Sequence[ConvOp], count: int) -> list[list[ConvOp]]:
    """The grid's ops dealt into ``count`` shards of near-equal estimated time, each sorted."""
    shards: list[list[ConvOp]] = [[] for _ in range(count)]
    loads = [(0, i) for i in range(count)]
    for op in sorted(set(ops), key=lambda op: (-op_cost(op), op)):
        load, i = heapq.heappop(loads)
        shards[i].append(op)
        heapq.heappush(loads, (load + op_cost(op), i))
    return [sorted(part) for part in shards]


def ops_sha256(ops: Sequence[ConvOp]) -> str:
    """A fingerprint of a set of op keys, independent of their order."""
    text = "".join(",".join(map(str, op_row(op))) + "\n" for op in sorted(set(ops)))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def shard_record(ops: Sequence[ConvOp], index: int, count: int, spaces: Sequence[str], resolution,
                 channel_step: int | None) -> tuple[dict, list[ConvOp]]:
    """(what a shard's sidecar records, the shard's ops) for shard ``index`` of ``count`` of ``ops``.

    The record names the grid twice: by what defines it (spaces, resolution, channel step), for
    people, and by the fingerprint of its op keys, for ``merge`` (two spaces may share a name).
    """
    if count > len(ops):
        raise UserError("--shard", "", f"{count} shards for a grid of {len(ops)} ops: use at most {len(ops)}")
    part = split_ops(ops, count)[index - 1]
    record = {"split": SPLIT, "index": index, "count": count, "spaces": sorted(spaces),
              "resolution": resolution, "channel_step": channel_step, "grid_ops": len(ops),
              "grid_sha256": ops_sha256(ops), "ops": len(part), "ops_sha256": ops_sha256(part)}
    return record, part


# ----------------------------------------------------------------------------- Ray
