"""Latency-table commands: ``latency build|merge|predict|validate|import-tinynas|rehash|list|
calibrate|time``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

from ..config import setting
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


DEFAULT_TABLE = "cpu-fp32"


@dataclass(frozen=True)
class LatencyBuildSettings:
    """``tinynas latency build``'s settings (each a flag and a ``key=value``)."""

    out: str = setting(help="table to write (CSV; its .json sidecar goes beside it)")
    space: tuple[str, ...] = setting((), help="search space file or shipped name (repeat for several spaces in one "
                                              "table)")
    model: tuple[str, ...] = setting((), help="a detector (model recipe or shipped name) whose every convolution joins "
                                              "the grid, so `latency predict --detector` can price it whole "
                                              "(repeatable). With a space: instead of the bare backbones, every "
                                              "detector a search of the space builds in this recipe, for a "
                                              "whole-detector latency budget")
    size: int = setting(640, bounds="[1, inf)", unit="pixels",
                        help="image size of the model detectors (a 12-channel space at 320 is a 640 image after the "
                             "Focus stem)")
    device: str = setting("cpu", help="cpu or cuda[:i]")
    dtype: Literal["fp32", "fp16", "bf16", "int8"] = setting("fp32", help="int8: TensorRT only")
    runtime: str = setting("torch", help="what times each op: torch (eager), or the deployment runtime the model "
                                         "will run in (onnxruntime, openvino, tensorrt), timing each op as a "
                                         "static-shape ONNX graph")
    batch_size: int = setting(1, bounds="[1, inf)", help="batch size timed")
    resolution: int | None = setting(None, bounds="[1, inf)", unit="pixels",
                                     help="the backbones' input side; default: the space's")
    threads: int = setting(1, bounds="[1, inf)", help="CPU threads, fixed and recorded")
    clock: Literal["auto", "thread-cpu", "wall"] = setting(
        "auto", help="CPU clock: auto = the thread's CPU time with one thread (robust to other processes sharing "
                     "the machine), else wall time")
    calibrate: bool | None = setting(None, help="CPU: time a fixed reference conv around each stretch of runs and "
                                                "report ops at the machine's nominal speed, so a shared VM's speed "
                                                "swings cancel out; default: on for CPU, off for CUDA")
    channel_step: int | None = setting(None, bounds="[1, inf)",
                                       help="measure only multiples of this many channels plus each range's ends, "
                                            "and interpolate between them; default: every channel count the space "
                                            "allows")
    warmup: int = setting(3, bounds="[1, inf)", help="untimed runs per op")
    runs: int = setting(10, bounds="[1, inf)", help="timed runs per op")
    max_ops: int | None = setting(None, bounds="[1, inf)", help="stop after this many new ops (the table stays "
                                                                "resumable)")
    shard: str = setting("", help="measure only shard I/N of the grid (1 <= I <= N), split by estimated time; "
                                  "build the N shards on identical boards and join them with `latency merge`")
    dry_run: bool = setting(False, help="print the grid's size and exit")
    note: str = setting("", help="free text stored in the sidecar (e.g. how the machine was loaded)")


def build_with(settings: LatencyBuildSettings):
    """``latency build`` with the command's settings: the table, or with ``dry_run`` the plan."""
    s = settings
    if s.dry_run:
        return plan_latency_build(s.space, s.model, s.resolution, s.channel_step, s.size, s.shard or None)
    return build_latency_table(s.space, s.out, models=s.model, device=s.device, dtype=s.dtype, batch=s.batch_size,
                               resolution=s.resolution, threads=s.threads, channel_step=s.channel_step,
                               warmup=s.warmup, runs=s.runs, max_ops=s.max_ops, note=s.note, clock=s.clock,
                               calibrate=s.calibrate, shard=s.shard or None, runtime=s.runtime.lower(),
                               model_size=s.size)


@dataclass(frozen=True)
class LatencyPredictSettings:
    """``tinynas latency predict``'s settings besides the ARCH it prices."""

    detector: bool = setting(False, help="price the whole detector (backbone, neck, head; fused) of a model recipe "
                                         "or checkpoint at resolution, the image size")
    latency_db: str = setting(DEFAULT_TABLE, help="latency table path or shipped name")
    resolution: int = setting(320, bounds="[1, inf)", unit="pixels", help="input size")
    in_channels: int | None = setting(None, bounds="[1, inf)",
                                      help="override the stem's input channels (12 = the searched view of a Focus "
                                           "stem)")


@dataclass(frozen=True)
class LatencyValidateSettings:
    """``tinynas latency validate``'s settings (each a flag and a ``key=value``)."""

    latency_db: str = setting(DEFAULT_TABLE, help="latency table path or shipped name")
    space: str = setting("", help="search space file or shipped name (random backbones of it are timed)")
    models: tuple[str, ...] = setting((), help="instead of a space: these detectors (model recipes or shipped "
                                               "names), each priced from its convolutions and timed end to end at "
                                               "resolution (default 640)")
    n: int = setting(50, bounds="[1, inf)", help="random architectures")
    seed: int = setting(0, help="seed of the random draw")
    resolution: int | None = setting(None, bounds="[1, inf)", unit="pixels", help="input size; default: the space's")
    fit: Literal["affine", "offset", "none"] = setting(
        "affine", help="correction fitted to the sum of ops: affine (scale + overhead), offset (overhead only) or none")
    warmup: int = setting(3, bounds="[1, inf)", help="untimed runs per network")
    runs: int = setting(10, bounds="[1, inf)", help="timed runs per network")
    rounds: int = setting(3, bounds="[1, inf)", help="spread each network's runs over this many passes through the "
                                                     "list (evens out load bursts)")
    out: str = setting("", help="folder for measurements.csv (resumable), report.json and the plot; new, empty, or "
                                "an earlier validate's to resume it")
    force: bool = setting(False, help="write into an out folder that holds other files")
    update: bool = setting(True, help="store the fit in the table's sidecar")
    runtime: str = setting("", help="time the networks in this runtime; default: the table's (another runtime "
                                    "measures how well its ops predict there, and leaves the sidecar alone)")


@dataclass(frozen=True)
class LatencyTimeSettings:
    """``tinynas latency time``'s settings besides the ONNX FILEs it times."""

    size: int = setting(320, bounds="[1, inf)", unit="pixels", help="image side timed")
    latency_db: str = setting("", help="take runtime, device, threads and clock from this latency table's sidecar")
    runtime: str = setting("", help="onnxruntime (default), openvino or tensorrt")
    threads: int | None = setting(None, bounds="[1, inf)", help="CPU threads; default: the table's, or 1")
    rounds: int = setting(11, bounds="[1, inf)", help="interleaved rounds")
    runs: int = setting(30, bounds="[1, inf)", help="timed runs per model per round")
    out: str = setting("", help="also write every figure to this JSON file (a new file)")


def time_with(files: Sequence[str | os.PathLike], settings: LatencyTimeSettings):
    """``time_onnx_files`` with the command's settings."""
    s = settings
    return time_onnx_files(files, s.size, latency_db=s.latency_db or None, runtime=s.runtime or None,
                           threads=s.threads, rounds=s.rounds, runs=s.runs, out=s.out or None)


@dataclass(frozen=True)
class LatencyCalibrateSettings:
    """``tinynas latency calibrate``'s settings (each a flag and a ``key=value``)."""

    latency_db: str = setting(help="latency table path or shipped name")
    model: str = setting("", help="detector recipe timed; default: the first the table was built for")
    space: str = setting("", help="search space whose random backbones it wraps; default: the table's")
    size: int | None = setting(None, bounds="[1, inf)", unit="pixels", help="image side; default: the table's "
                                                                            "build size")
    n: int = setting(8, bounds="[1, inf)", help="detectors timed, the recipe's own included")
    seed: int = setting(0, help="seed of the random backbones")
    runs: int = setting(15, bounds="[1, inf)", help="timed runs per detector")
    rounds: int = setting(3, bounds="[1, inf)", help="passes through the detectors the runs are spread over")
    store: bool = setting(True, help="store the fit in the table's sidecar under this machine's name")


def calibrate_with(settings: LatencyCalibrateSettings, progress: bool = True) -> dict:
    """``calibrate_latency_table`` with the command's settings."""
    s = settings
    return calibrate_latency_table(s.latency_db, model=s.model or None, space=s.space or None, size=s.size, n=s.n,
                                   seed=s.seed, runs=s.runs, rounds=s.rounds, store=s.store, progress=progress)
