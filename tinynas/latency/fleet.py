"""Dividing a latency grid among a fleet of identical boards, and running the shards.

``build_table(..., shard=(i, n))`` measures shard ``i`` of ``n`` of the grid; ``merge.py`` joins
the shards into one table. The split is a pure function of the grid, so every board computes
its own part without talking to the others: the ops are sorted by an estimate of the time
they take to measure, then each goes to the shard with the least estimated time so far
(longest-processing-time-first; ties to the lowest index). Measurement time, not op count,
is what a fleet waits for: one regular conv at 320x320 costs as much as a thousand at 20x20.
All arithmetic is on integers and the grid is a sorted set, so the split is the same on any
machine, whatever the order the spaces were given in.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import re
import tempfile
from pathlib import Path
from typing import Sequence

from ..atomic import atomic_write_bytes
from ..errors import UserError
from ..ops import ConvOp
from ..runfolder import check_new_file
from .table import op_row, sidecar_path

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
RESOURCE = "latency_board"


def run_shards_with_ray(spaces, out: str | os.PathLike, count: int, folder: str | os.PathLike | None = None,
                        resource: str = RESOURCE, allow_partial: bool = False, force: bool = False,
                        **build_options):
    """Build ``count`` shards of the spaces' grid as Ray tasks and merge them into ``out``.

    Each task asks for one unit of the custom resource ``resource``: start every board's Ray
    node with ``--resources='{"latency_board": 1}'`` and no two shards ever share a board (two
    timings on one device falsify each other), whatever else the cluster runs. A task builds
    its shard on the board's own disk and returns the files; they are kept in ``folder``
    (default: ``<out>.shards/`` beside ``out``), and a shard already complete there is not
    measured again, so rerunning after a board failed redoes only the missing shards (one kept
    from a run with other settings is refused by the merge, by name). ``build_options`` go to ``build_table`` (device, dtype, batch, channel_step, ...).
    """
    try:
        import ray
    except ImportError:
        raise UserError("ray", "", "not installed: pip install 'tinynas[ray]'") from None
    from .merge import merge_shards, shard_status  # merge (and build) import this module

    out = check_new_file(out, "--out", force)  # before the fleet's hours, not after
    folder = Path(folder) if folder is not None else out.with_name(f"{out.stem}.shards")
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{out.stem}.shard-{i}-of-{count}.csv" for i in range(1, count + 1)]
    todo = [i for i, path in enumerate(paths, 1) if shard_status(path) != "complete"]
    task = ray.remote(_build_shard).options(resources={resource: 1}, max_retries=2)
    pending = {task.remote(spaces, i, count, paths[i - 1], build_options): i for i in todo}
    errors = []
    while pending:  # keep each shard the moment it arrives: a failure loses only its own
        done, _ = ray.wait(list(pending))
        index = pending.pop(done[0])
        files, error = ray.get(done[0])
        if error is not None:
            errors.append(error)
        else:
            _keep_shard(paths[index - 1], *files)
    if errors:
        raise UserError(*errors[0])
    return merge_shards(paths, out, allow_partial=allow_partial, force=force)


def _build_shard(spaces, index: int, count: int, path: Path, build_options: dict):
    """On a board: build one shard in a scratch folder; (its CSV and sidecar, None), or
    (None, the parts of the ``UserError`` that refused it, naming ``path`` for the scratch file)."""
    from .build import build_table

    with tempfile.TemporaryDirectory(prefix="tinynas-shard-") as scratch:
        built = Path(scratch) / path.name
        try:
            build_table(spaces, built, shard=(index, count), progress=False, **build_options)
        except UserError as err:  # travels as its parts: its own __init__ makes it unpicklable
            return None, (err.source.replace(scratch, str(path.parent)), err.field, err.reason)
        return (built.read_bytes(), sidecar_path(built).read_bytes()), None


def _keep_shard(path: Path, csv: bytes, sidecar: bytes) -> None:
    # The sidecar last: a shard file without it reads as "not built" and is measured again.
    atomic_write_bytes(path, csv)
    atomic_write_bytes(sidecar_path(path), sidecar)
