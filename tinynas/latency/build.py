"""``build_table``: measure every op of one or more spaces' grids into a table, resumably.

Rows are appended one at a time (one write, fsynced) as they are measured, so a killed build
loses at most the op it was timing; running the same build again skips what is there.
Measurement settings that change the numbers (device, dtype, batch, threads, warm-up, runs)
must match the partial table's, or the resume is refused. ``shard=(i, n)`` measures only
shard ``i`` of ``n`` of the grid (see ``fleet.py``), a table of its own that ``merge`` joins.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from ..errors import UserError
from ..memory import check_fits
from ..preflight import require, table_build_packages
from ..space import SearchSpace
from . import measure
from .shards import parse_shard, shard_record
from .grid import detector_groups, grid_ops, merge_groups, space_groups
from .table import (HEADER, LatencyTable, append_row, base_meta, check_sha256, format_row, load_table,
                    read_csv_bytes, read_meta, seal_meta, sidecar_path, start_rows_file, table_lock, write_meta)

# Settings that must agree between a partial table and the build resuming it. A shard's part
# of the grid is one of its settings: resumed as another shard, or with another grid, its
# rows would no longer be the part it says it holds.
RESUME_KEYS = ("device", "dtype", "batch", "threads", "clock", "allocator", "warmup", "runs", "act",
               "calibrated", "shard", "runtime", "runtime_version", "provider", "op_timing")
# What a table written before a setting existed holds for it.
RESUME_DEFAULTS = {"calibrated": False, "runtime": "torch", "op_timing": "alone"}


def _check_largest_op_fits(ops, batch: int, dtype: str, device) -> None:
    """Refuse a batch (or grid) whose biggest op cannot be allocated here, before timing anything:
    one op holds its input, its output (twice with a residual) and its weights at once."""
    width = 2 if dtype in ("fp16", "bf16") else 4
    needed = max((batch * (op.in_channels * op.height * op.width
                           + (1 + op.fused_residual) * op.out_channels * op.out_height * op.out_width)
                  + op.out_channels * op.in_channels // op.groups * op.kernel ** 2) * width for op in ops)
    check_fits(needed, "--batch-size", "", f"the largest op at batch {batch}", "lower --batch-size", device)


def _model_ops(models: Sequence, size: int) -> set:
    from ..detect.conv_ops import detector_op_counts
    return {op for recipe in models for op, _ in detector_op_counts(recipe, size)}


def build_grid(spaces: Sequence[SearchSpace], models: Sequence = (), resolution: int | None = None,
               channel_step: int | None = None, model_size: int = 640) -> tuple[list, list[str], object]:
    """(the ops a build measures, the names of what they come from, the grid's resolution).

    Spaces alone: each space's backbone grid at ``resolution`` (default: its own). Models alone:
    every conv of each detector at ``model_size``. Both: the detectors a search of each space
    builds inside each model (``grid.detector_groups``: wrapped backbones, the neck and head
    over the space's level widths) plus each model's own convs, all at ``model_size``; the bare
    backbone grid is not in it (build it into the same table with ``--space`` alone if a search
    also budgets the backbone).
    """
    if spaces and models:
        if resolution is not None:
            raise UserError("--resolution", "", "with --model the spaces' backbones are sized by the "
                            "detector's image (--size)")
        groups = merge_groups(*(detector_groups(s, m, model_size, channel_step) for m in models for s in spaces))
        names = [f"{m.name or 'model'}@{model_size} over {s.name}" for m in models for s in spaces]
        return sorted(set(grid_ops(groups)) | _model_ops(models, model_size)), names, model_size
    groups = merge_groups(*(space_groups(s, resolution, channel_step) for s in spaces)) if spaces else {}
    ops = sorted(set(grid_ops(groups)) | _model_ops(models, model_size)) if models else grid_ops(groups)
    names = [s.name for s in spaces] + [f"{m.name or 'model'}@{model_size}" for m in models]
    return ops, names, resolution or sorted({s.resolution for s in spaces})


def build_table(spaces: Sequence[SearchSpace], out: str | os.PathLike, device: str = "cpu",
                dtype: str = "fp32", batch: int = 1, resolution: int | None = None,
                threads: int | None = 1, channel_step: int | None = None,
                warmup: int = measure.DEFAULT_WARMUP, runs: int = measure.DEFAULT_RUNS,
                max_ops: int | None = None, progress: bool = True, note: str = "",
                clock: str = "auto", calibrate: bool | None = None,
                shard: str | tuple[int, int] | None = None, runtime: str = "torch",
                models: Sequence = (), model_size: int = 640) -> LatencyTable:
    """Measure the grid of ``spaces`` into ``out`` (CSV + JSON sidecar); resume if present.

    ``channel_step`` thins the channel grid (see ``grid.coarsen``); ``max_ops`` stops after
    measuring that many new ops, leaving a resumable partial table. ``calibrate`` (default:
    on for CPU) reports every op at the machine's nominal speed (see ``calibrate.py``); a
    resumed build keeps the nominal speed the table started with. ``shard`` (``"2/4"`` or
    ``(2, 4)``) measures that part of the grid only (``shards.split_ops``). ``runtime``: ``torch``
    (eager), or ``onnxruntime`` / ``openvino`` / ``tensorrt``, which time each op as an ONNX graph
    in that runtime (see ``runtimes.py``). ``models``: detector recipes (``ModelRecipe``) whose
    every convolution at ``model_size`` joins the grid, so whole detectors can be priced; with
    ``spaces`` too, the grid is every detector a search of those spaces builds in each model
    (``build_grid``), which ``DetectorLatencyModel`` prices.
    """
    if not spaces and not models:
        raise UserError("--space", "", "give at least one search space or detector model")
    require(table_build_packages(str(runtime).strip().lower()), "latency build", f"a table timed in {runtime}")
    if batch <= 0:
        raise UserError("--batch-size", "", f"must be positive, got {batch}")
    shard = parse_shard(shard) if shard is not None else None
    out = Path(out)
    # Two builds appending to one table would both write every op, and a table with duplicate
    # rows is refused on load from then on: the second build fails at once instead.
    with table_lock(out):
        if calibrate is None:
            calibrate = not str(device).startswith("cuda")
        meta = read_meta(out) if out.exists() and sidecar_path(out).exists() else None
        nominal = (meta.get("calibration") or {}).get("nominal_ms") if meta else None
        setup = measure.setup_device(device, dtype, threads, clock, calibrate, nominal, runtime)
        ops, grid_names, grid_resolution = build_grid(spaces, models, resolution, channel_step, model_size)
        shard_entry = None
        if shard is not None:
            shard_entry, ops = shard_record(ops, *shard, grid_names, grid_resolution, channel_step)
        _check_largest_op_fits(ops, batch, dtype, device)

        record = setup.record()
        settings = _settings(setup, record, dtype, batch, warmup, runs, bool(calibrate), shard_entry)
        model_names = grid_names if spaces and models else grid_names[len(spaces):]
        build_entry = {"spaces": [s.name for s in spaces], **({"models": model_names} if models else {}),
                       "resolution": grid_resolution, "channel_step": channel_step, "grid_ops": len(ops)}
        if meta is not None:
            done = _resume_table(out, meta, settings)
        else:
            done = set()
            meta = _start_table(out, settings, setup, record, dtype, batch)
        _mark_incomplete(out, meta, build_entry, note)
        todo = [op for op in ops if op not in done]
        return _measure_rows(out, meta, ops, todo[:max_ops] if max_ops is not None else todo, setup, batch,
                             warmup, runs, progress)


def _mark_incomplete(out: Path, meta: dict, build_entry: dict, note: str) -> None:
    if note:
        meta["note"] = note
    meta["status"] = "incomplete"
    # Rows are about to be appended: the old fingerprint and count stop being true, and a build
    # killed before it rewrites them must leave a table that resumes, not one that reads damaged.
    meta.pop("sha256", None)
    meta.pop("rows", None)
    if build_entry not in meta.get("builds", []):
        meta.setdefault("builds", []).append(build_entry)
    write_meta(out, meta)


def _settings(setup, record: dict, dtype: str, batch: int, warmup: int, runs: int, calibrated: bool,
              shard_entry) -> dict:
    """What a table's rows depend on: all of it must agree for a build to resume the table."""
    return {"device": record["device"], "dtype": dtype, "batch": batch, "threads": setup.threads,
            "clock": setup.clock, "allocator": setup.allocator, "warmup": warmup, "runs": runs,
            "act": "relu", "calibrated": calibrated, "shard": shard_entry,
            "runtime": record["runtime"], "runtime_version": record.get("runtime_version"),
            "provider": record.get("provider"), "op_timing": record.get("op_timing", "alone")}


def _measure_rows(out: Path, meta: dict, ops: list, todo: list, setup, batch: int, warmup: int, runs: int,
                  progress: bool) -> LatencyTable:
    """Time ``todo``, appending a row as each is measured; then seal the table (complete when
    every op of the grid ``ops`` has its row)."""
    for op in tqdm(todo, desc=f"latency {out.name}", unit="op", disable=not progress):
        timing = measure.measure_op(op, setup, batch, warmup, runs)
        append_row(out, format_row(op, timing.median_ms, timing.spread_ms, timing.runs))
    table = load_table(out, allow_incomplete=True)
    measured = set(table.ops())
    meta["status"] = "complete" if all(op in measured for op in ops) else "incomplete"
    meta["rows"] = len(table)
    write_meta(out, seal_meta(meta, out.read_bytes(), len(table)))
    table.meta = meta
    return table


def _resume_table(out: Path, meta: dict, settings: dict) -> set:
    """The ops an earlier build of ``out`` measured, once its settings are this build's."""
    for key in RESUME_KEYS:
        if meta.get(key, RESUME_DEFAULTS.get(key)) != settings[key]:
            raise UserError(str(sidecar_path(out)), key, f"the existing table has {meta.get(key)!r}, this "
                            f"build {settings[key]!r}: use another --out or the same settings")
    meta.setdefault("runtime", settings["runtime"])  # a table from before runtimes: say it is torch
    # Before a torn last line is cut off: in a sealed table there is none, only an edit.
    check_sha256(out, meta, read_csv_bytes(out))
    start_rows_file(out)
    return set(load_table(out, allow_incomplete=True).ops())


def _start_table(out: Path, settings: dict, setup, record: dict, dtype: str, batch: int) -> dict:
    """A new table's rows file and sidecar, with how its ops are measured in words."""
    # Only the header (a build killed before its first sidecar) holds nothing to keep.
    if out.exists() and out.read_bytes() not in (b"", HEADER.encode()):
        raise UserError(str(out), "", "exists without its sidecar: refusing to overwrite it")
    start_rows_file(out)
    meta = base_meta(settings["device"], dtype, batch)
    meta.update(settings)
    meta.update({k: record[k] for k in ("device_name", "torch_version", "python_version",
                                        "cudnn_benchmark", "date")})
    if setup.runtime is not None:
        meta["dispatch_floor_ms"] = record["dispatch_floor_ms"]
    meta["method"] = _method(setup, settings["warmup"], settings["runs"])
    if setup.reference is not None:
        meta["calibration"] = setup.reference.record()
    meta["builds"] = []
    return meta


def _method(setup, warmup: int, runs: int) -> str:
    if setup.runtime is None:
        how = ("each op timed alone as deployed: conv with bias (BatchNorm folded), "
               "residual add on fused ops, ReLU; torch.no_grad; ")
    elif setup.runtime.op_timing == "in-chain":
        how = (f"each op as a static-shape ONNX graph (Conv with the folded BatchNorm as bias, Add on fused "
               f"ops, Relu) between a 1x1 conv before and one after it, run in {setup.runtime.name} "
               f"{setup.runtime.version} ({setup.runtime.provider}, f32 inference, {setup.threads} "
               "thread(s)); the op's time is its own nodes' in the runtime's per-node performance "
               "counters (the neighbours and the layout conversions at the graph's ends are left out); ")
    else:
        how = (f"each op as a static-shape ONNX graph (Conv with the folded BatchNorm as bias, Add on fused "
               f"ops, Relu) run in {setup.runtime.name} {setup.runtime.version} ({setup.runtime.provider}): "
               f"all graph optimisations, sequential, {setup.threads} intra-op thread(s), inputs and outputs "
               f"bound once; the per-call floor ({setup.dispatch_floor_ms:.4f} ms, an Identity graph) is "
               "taken off each op; ")
    method = (how + f"{warmup} warm-up runs then median (IQR as spread) of {runs} runs; "
              + {"cuda-events": "CUDA events after synchronize, cudnn.benchmark on",
                 "thread-cpu": "clock: the calling thread's CPU time (time.thread_time), "
                               "torch.set_num_threads(1)",
                 "wall": f"clock: time.perf_counter, torch.set_num_threads({setup.threads})",
                 }[setup.clock])
    if setup.reference is not None:
        method += ("; each stretch of runs divided by a reference conv timed before and "
                   "after it, times its nominal_ms (see calibration)")
    return method
