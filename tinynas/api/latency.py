"""Latency-table commands: ``latency build|merge|predict|validate|import-tinynas|rehash|list|
calibrate|time``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ..errors import UserError
from ..runfolder import check_new_file


def calibrate_latency_table(table: str | os.PathLike, model: str | None = None, space: str | None = None,
                            size: int | None = None, n: int = 8, seed: int = 0, runs: int = 15, rounds: int = 3,
                            store: bool = True, progress: bool = True) -> dict:
    """``tinynas latency calibrate``: time ``n`` reference detectors here, fit the table's scale
    and overhead to this machine and (with ``store``) keep the fit in its sidecar under this
    machine's name; returns the fit and the error before and after (``latency/machine_fit.py``)."""
    from ..latency.machine_fit import calibrate_table
    from ..latency.table import resolve_table_path

    return calibrate_table(resolve_table_path(table), model=model, space=space, size=size, n=n, seed=seed,
                           runs=runs, rounds=rounds, store=store, progress=progress)


def table_sidecar(table: str | os.PathLike) -> Path:
    """The JSON sidecar of a latency table (a file, or a shipped table's name)."""
    from ..latency.table import resolve_table_path, sidecar_path

    return sidecar_path(resolve_table_path(table))


def list_latency_tables(more: Sequence[str | os.PathLike] = ()) -> tuple[list[dict], str]:
    """``tinynas latency list``: one dict per table (the shipped ones, then ``more``: tables or
    folders of them) with its device, runtime, ops, status, validated error and whether it
    prices this machine (``here``); and this machine's CPU name."""
    from ..latency.machine import cpu_name, machine_fit, mismatch, shipped_tables
    from ..latency.table import read_meta, sidecar_path

    paths = shipped_tables()
    for text in more:
        path = Path(text)
        if path.is_dir():
            paths += sorted(p for p in path.rglob("*.csv") if sidecar_path(p).is_file())
        elif path.is_file() and sidecar_path(path).is_file():
            paths.append(path)
        else:
            raise UserError(str(text), "", "neither a latency table (CSV with its .json sidecar) nor a folder")
    shipped, here_cpu, rows = set(shipped_tables()), cpu_name(), []
    for path in dict.fromkeys(p.resolve() for p in paths):
        meta = read_meta(path)
        fitted = ((meta.get("validation") or {}).get("fitted_leave_one_out") or {}).get("mape_pct")
        on_cpu = str(meta.get("device", "cpu")).startswith("cpu")
        here = "-" if not on_cpu else "no" if mismatch(meta) else \
            "calibrated" if machine_fit(meta) and meta.get("device_name") != here_cpu else "yes"
        rows.append({"table": path.stem if path in shipped else str(path),
                     "device": meta.get("device_name") or meta.get("device"),
                     "runtime": meta.get("runtime") or "torch",
                     "runtime_version": str(meta.get("runtime_version") or "").split("-")[0],  # OpenVINO adds its build
                     "threads": meta.get("threads"), "dtype": meta.get("dtype"), "ops": meta.get("rows"),
                     "status": meta.get("status", ""), "validated_mape_pct": fitted, "here": here})
    return rows, here_cpu


def _spaces(names: Sequence[str]) -> list:
    from ..resources import resolve_space_path
    from ..space import load_space

    return [load_space(resolve_space_path(name)) for name in names]


def model_recipe(text: str):
    """A model recipe from a recipe file, a shipped name, or a checkpoint's stored recipe."""
    if str(text).endswith(".pt"):
        from ..checkpoint import load_checkpoint

        return load_checkpoint(text).recipe
    from ..detect.model_recipe import load_model_recipe

    return load_model_recipe(text)


def build_latency_table(spaces: Sequence[str], out: str | os.PathLike, models: Sequence[str] = (), **options):
    """``tinynas latency build``: time every convolution the ``spaces`` (names or files) and the
    ``models``' necks and heads can produce, into the table ``out`` (resumable); ``options`` are
    ``latency.build_table``'s (device, dtype, runtime, threads, channel_step, shard, ...)."""
    from ..latency import build_table

    return build_table(_spaces(spaces), out, models=[model_recipe(m) for m in models], **options)


def plan_latency_build(spaces: Sequence[str], models: Sequence[str], resolution: int, channel_step: int,
                       size: int | None, shard: str | None = None) -> dict:
    """``latency build --dry-run``: how many ops (and groups) the build would time, and, for a
    ``shard`` "I/N", how many fall to it and its share of the estimated time."""
    from ..latency.build import build_grid
    from ..latency.grid import GroupKey
    from ..latency.shards import op_cost, parse_shard, split_ops

    ops = build_grid(_spaces(spaces), [model_recipe(m) for m in models], resolution, channel_step, size)[0]
    plan = {"ops": len(ops), "groups": len({GroupKey.of(op) for op in ops})}
    if shard:
        index, count = parse_shard(shard)
        part = split_ops(ops, count)[index - 1]
        plan.update(shard=(index, count), shard_ops=len(part), share=sum(map(op_cost, part)) / sum(map(op_cost, ops)))
    return plan


def merge_latency_shards(shards: Sequence[str | os.PathLike], out: str | os.PathLike, **options):
    """``tinynas latency merge``: the shards of one grid as one table (``latency.merge_shards``)."""
    from ..latency import merge_shards

    return merge_shards(shards, out, **options)


def predict_backbone_latency(arch: str, latency_db: str, resolution: int, in_channels: int | None = None) -> dict:
    """``tinynas latency predict ARCH``: the table's ms per block and in total, the per-image
    overhead, and the ops priced by their nearest measured op."""
    from ..latency import load_predictor
    from .arch import load_any_arch

    loaded = load_any_arch(arch)
    if in_channels is not None:
        loaded = loaded.with_block(0, loaded.blocks[0].replace(in_channels=in_channels))
    predictor = load_predictor(latency_db)
    return {"arch": loaded, "blocks_ms": predictor.predict_blocks_ms(loaded, resolution),
            "total_ms": predictor.predict_ms(loaded, resolution), "overhead_ms": predictor.overhead_ms / predictor.batch,
            "extrapolated": len(predictor.extrapolated), "batch": predictor.batch, "meta": predictor.table.meta,
            "table": str(predictor.table.path)}


def predict_detector_latency(model: str, latency_db: str, resolution: int) -> dict:
    """``tinynas latency predict MODEL --detector``: the whole fused detector's ms from its convolutions."""
    from ..detect.conv_ops import detector_op_counts
    from ..latency import load_predictor

    recipe = model_recipe(model)
    ops = detector_op_counts(recipe, resolution)
    predictor = load_predictor(latency_db)
    return {"recipe": recipe, "total_ms": predictor.predict_ops_ms(ops), "convs": sum(count for _, count in ops),
            "distinct": len(ops), "batch": predictor.batch, "meta": predictor.table.meta,
            "table": str(predictor.table.path)}


def validate_latency_table(latency_db: str, space: str, **options):
    """``tinynas latency validate --space``: random backbones timed against the table's prediction."""
    from ..latency import validate_table

    loaded = _spaces([space])[0]
    return loaded, validate_table(latency_db, loaded, **options)


def validate_detector_latency(latency_db: str, models: Sequence[str], size: int, **options):
    """``tinynas latency validate --models``: whole detectors timed against the table's prediction."""
    from ..latency.validate_models import validate_models

    return validate_models(latency_db, [model_recipe(m) for m in models], size, **options)


def import_tinynas_table(source: str | os.PathLike, out: str | os.PathLike, force: bool = False, **options):
    """``tinynas latency import-tinynas``: a TinyNAS latency file as a table (``latency.import_tinynas``)."""
    from ..latency import import_tinynas

    check_new_file(out, "--out", force)
    return import_tinynas(source, out, **options)


def rehash_latency_table(table: str | os.PathLike, rows: int | None = None):
    """``tinynas latency rehash``: every row checked as the loader does, the CSV's sha256 recorded."""
    from ..latency import rehash_table

    return rehash_table(table, rows=rows)


def time_onnx_files(files: Sequence[str | os.PathLike], size: int, latency_db: str | None = None,
                    runtime: str | None = None, threads: int | None = None, rounds: int = 11, runs: int = 30,
                    out: str | os.PathLike | None = None):
    """``tinynas latency time``: ONNX files timed interleaved (``latency.side_by_side``); with
    ``out``, every figure also written there as JSON (a new file)."""
    from ..atomic import atomic_write_text
    from ..fileio import json_text
    from ..latency.side_by_side import time_side_by_side

    if out:
        check_new_file(Path(out), "--out")
    result = time_side_by_side(files, size, db=latency_db or None, runtime=runtime.lower() if runtime else None,
                               threads=threads, rounds=rounds, runs=runs)
    if out:
        atomic_write_text(out, json_text(result.to_json(), indent=2) + "\n")
    return result
