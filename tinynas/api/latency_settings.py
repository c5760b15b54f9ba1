"""The settings of the ``latency`` commands, one frozen dataclass each (a flag and a ``key=value``
per field, help and defaults written here once), and the functions that run a command with them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal, Sequence

from ..config import setting
from .latency import (build_latency_table, calibrate_latency_table, import_tinynas_table, merge_latency_shards,
                      plan_latency_build, rehash_latency_table, time_onnx_files)

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
                                         "or checkpoint at size, the image side")
    latency_db: str = setting(DEFAULT_TABLE, help="latency table path or shipped name")
    resolution: int = setting(320, bounds="[1, inf)", unit="pixels", help="the backbone's input side")
    size: int | None = setting(None, bounds="[1, inf)", unit="pixels",
                               help="the image side a whole detector is priced at (--detector, or a checkpoint); "
                                    "default: resolution, as before this setting")
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
                                               "size")
    n: int = setting(50, bounds="[1, inf)", help="random architectures")
    seed: int = setting(0, help="seed of the random draw")
    resolution: int | None = setting(None, bounds="[1, inf)", unit="pixels",
                                     help="the random backbones' input side; default: the space's")
    size: int | None = setting(None, bounds="[1, inf)", unit="pixels",
                               help="the image side of --models; default: resolution if given (as before this "
                                    "setting), else 640")
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


@dataclass(frozen=True)
class LatencyMergeSettings:
    """``tinynas latency merge``'s settings besides the SHARD tables it joins."""

    out: str = setting(help="table to write (CSV; its .json sidecar goes beside it)")
    force: bool = setting(False, help="replace out if it exists")
    allow_partial: bool = setting(False, help="merge even if shards are missing or unfinished: the table is marked "
                                              "incomplete, what is missing recorded; `latency build` with the same "
                                              "spaces and out measures it")
    max_nominal_ratio: float = setting(1.25, bounds="[1, inf)",
                                       help="calibrated shards whose nominal reference times differ more than this "
                                            "are refused as not identical boards")


def merge_with(shards: Sequence[str | os.PathLike], settings: LatencyMergeSettings):
    """``merge_latency_shards`` with the command's settings."""
    s = settings
    return merge_latency_shards(shards, s.out, allow_partial=s.allow_partial, force=s.force,
                                max_nominal_ratio=s.max_nominal_ratio)


@dataclass(frozen=True)
class LatencyImportSettings:
    """``tinynas latency import-tinynas``'s settings besides the TinyNAS FILE it converts."""

    out: str = setting(help="table to write (CSV; its .json sidecar goes beside it)")
    force: bool = setting(False, help="replace out if it exists")
    batch_size: int | None = setting(None, bounds="[1, inf)", help="batch to keep when the file mixes several")
    dtype: Literal["fp32", "fp16", "int8"] | None = setting(None, help="default: fp16 when the file name says so, "
                                                                      "else fp32")
    device_name: str = setting("NVIDIA V100", help="recorded in the sidecar")
    runtime: str = setting("TensorRT", help="recorded in the sidecar")
    extrapolation: Literal["tinynas", "nearest", "none"] = setting(
        "tinynas", help="how ops are priced: tinynas = as TinyNAS's own predictor does; nearest / none = "
                        "interpolated, with the nearest measured op or an error outside the measured shapes")


def import_with(source: str | os.PathLike, settings: LatencyImportSettings):
    """``import_tinynas_table`` with the command's settings."""
    s = settings
    return import_tinynas_table(source, s.out, force=s.force, batch=s.batch_size, dtype=s.dtype,
                                device_name=s.device_name, runtime=s.runtime, extrapolation=s.extrapolation)


@dataclass(frozen=True)
class LatencyRehashSettings:
    """``tinynas latency rehash``'s settings besides the TABLE it accepts."""

    rows: int | None = setting(None, bounds="[0, inf)",
                               help="the CSV's row count, when an edit added or removed rows (a count other than "
                                    "the sidecar's is refused without it: the CSV may be another table's)")


def rehash_with(table: str | os.PathLike, settings: LatencyRehashSettings):
    """``rehash_latency_table`` with the command's settings."""
    return rehash_latency_table(table, rows=settings.rows)
