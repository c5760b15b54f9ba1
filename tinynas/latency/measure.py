"""Timing convolutions and whole networks on a device, the way a deployed model runs.

Deployed means: BatchNorm folded into the conv bias, the activation applied, and on the
last conv of a residual unit the residual add timed with it (then the activation, as the
residual unit does). Every timing is ``torch.no_grad()``, after warm-up runs, at a fixed
thread count; the statistic is the median of the timed runs and the spread their
inter-quartile range. On CUDA the clock is a pair of CUDA events around each run after a
synchronize, with ``cudnn.benchmark`` on so each shape runs its fastest kernel.

On a CPU with one thread the default clock is the thread's own CPU time: the work runs
inline in the calling thread, and time spent descheduled while other processes use the core
is not latency of the model. On a shared machine this is the difference between numbers
that repeat and numbers that swing 3-5x with the neighbours' load. ``clock="wall"``
(and any multi-threaded run) uses ``time.perf_counter``.

Steady state on CPU needs one more step. glibc serves large blocks with mmap and returns
them on free, so every run of a big conv page-faults its output in again (a 12->48 3x3 conv
at 320x320 spends 60% of its time zero-filling pages), and whether it does depends on the
process's allocation history, not on the op: the same op measured 22 ms in one process and
54 ms in another. ``setup_device`` therefore keeps freed memory in the heap
(``mallopt``: no mmap, no trimming), which is what a warmed-up deployed runtime with a
caching allocator sees; the sidecar records it.

On a shared CPU the machine's speed itself drifts; ``setup_device(calibrate=True)`` times a
reference conv around the runs and reports them at a nominal speed (see ``calibrate.py``).

Measurement is serial by design: two timings sharing a device falsify each other.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

import numpy as np
import torch
from torch import nn

from ..arch import Arch
from ..errors import UserError
from ..nn import deployed_backbone, get_activation
from ..ops import DEPTHWISE, ConvOp
from . import onnx_graphs, runtimes
from .calibrate import SpeedReference, thread_or_wall_clock
from .machine import cpu_name
from .netops import AVGPOOL
from .runtimes import Runtime

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DEFAULT_WARMUP = 3
DEFAULT_RUNS = 10
# The per-call floor is tens of microseconds: many runs give a stable median.
FLOOR_WARMUP, FLOOR_RUNS = 50, 500
MIN_OP_MS = 1e-4  # an op never costs nothing, even when its time is within the floor's noise


@dataclass(frozen=True)
class Timing:
    median_ms: float
    spread_ms: float  # inter-quartile range of the timed runs
    runs: int


@dataclass(frozen=True)
class DeviceSetup:
    """A resolved device: where tensors go and what the table's sidecar records about it."""

    device: torch.device
    dtype: torch.dtype
    dtype_name: str
    threads: int
    clock: str  # "cuda-events", "thread-cpu" or "wall"
    allocator: str = "default"
    # CPU only: runs converted to the machine's nominal speed (see calibrate.py).
    reference: SpeedReference | None = field(default=None, compare=False)
    # A deployment runtime timing ONNX graphs (None: eager PyTorch), and its per-call floor.
    runtime: Runtime | None = field(default=None, compare=False)
    dispatch_floor_ms: float = 0.0

    def record(self) -> dict:
        record = {"device": self.device.type if self.device.type == "cpu" else str(self.device),
                  "device_name": device_name(self.device), "dtype": self.dtype_name,
                  "threads": self.threads, "torch_version": torch.__version__,
                  "python_version": platform.python_version(),
                  "cudnn_benchmark": self.device.type == "cuda" and self.runtime is None, "clock": self.clock,
                  "allocator": self.allocator,
                  "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        if self.runtime is not None:
            record.update(self.runtime.record(), dispatch_floor_ms=round(self.dispatch_floor_ms, 6))
        else:
            record["runtime"] = "torch"
        return record


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


CLOCKS = ("auto", "thread-cpu", "wall")


M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4


def keep_heap_memory() -> str:
    """Stop glibc from returning freed blocks to the OS (see the module doc); says what it did."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 2 ** 30) == 1
    except (OSError, AttributeError):
        ok = False
    return "glibc mallopt(M_MMAP_MAX=0, M_TRIM_THRESHOLD=1GiB)" if ok else "default"


def setup_device(device: str = "cpu", dtype: str = "fp32", threads: int | None = 1,
                 clock: str = "auto", calibrate: bool = False,
                 nominal_ms: float | None = None, runtime: str = "torch") -> DeviceSetup:
    """Resolve and configure a device; ``threads`` is fixed for CPU timing (and recorded).

    ``clock="auto"``: CUDA events on CUDA, thread CPU time on one CPU thread, else wall time.
    ``calibrate`` (CPU only) times a reference conv around the measured runs and reports them
    at nominal speed; ``nominal_ms`` is the reference's nominal time (None: measure it now).
    ``runtime``: ``torch`` (eager), or a deployment runtime of ``runtimes.py`` that times ONNX
    graphs; its per-call floor is measured here.
    """
    if clock not in CLOCKS:
        raise UserError("--clock", "", f"unknown clock {clock!r} (known: {', '.join(CLOCKS)})")
    engine = runtimes.load_runtime(runtime, device, dtype, threads or torch.get_num_threads())
    if engine is None and dtype not in DTYPES:
        raise UserError("--dtype", "", f"unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")
    torch_dtype = DTYPES.get(dtype, torch.float16)  # int8 TensorRT: the speed reference stays in fp16
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UserError("--device", "", f"unknown device {device!r} (use cpu or cuda[:i])") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available() and engine is None:
            raise UserError("--device", "", f"{device!r} asked for but CUDA is not available")
        torch.backends.cudnn.benchmark = True
    elif dev.type != "cpu":
        raise UserError("--device", "", f"unsupported device {device!r} (use cpu or cuda[:i])")
    allocator = keep_heap_memory() if dev.type == "cpu" else "torch CUDA caching allocator"
    if threads is not None:
        if threads <= 0:
            raise UserError("--threads", "", f"must be positive, got {threads}")
        torch.set_num_threads(threads)
    n = torch.get_num_threads()
    if dev.type == "cuda":
        # A runtime's GPU run synchronises its outputs before returning: a host clock times it.
        resolved = "cuda-events" if engine is None else "wall"
    elif clock == "thread-cpu" and n != 1:
        raise UserError("--clock", "", "thread-cpu timing needs --threads 1 (other threads' work is not counted)")
    else:
        resolved = "thread-cpu" if clock in ("auto", "thread-cpu") and n == 1 else "wall"
    reference = None
    if calibrate:
        if dev.type != "cpu":
            raise UserError("--calibrate", "", "speed calibration is for CPU timing; CUDA events are stable")
        reference = SpeedReference(dev, torch_dtype, thread_or_wall_clock(resolved), nominal_ms)
        if nominal_ms is None:
            reference.fix_nominal()
    setup = DeviceSetup(dev, torch_dtype, dtype, n, resolved, allocator, reference, engine)
    if engine is None:
        return setup
    graph, inputs = onnx_graphs.floor_graph()
    floor = time_runs(engine.compile(graph, inputs), setup, warmup=FLOOR_WARMUP, runs=FLOOR_RUNS).median_ms
    return replace(setup, dispatch_floor_ms=floor)


def time_runs(fn, setup: DeviceSetup, warmup: int = DEFAULT_WARMUP, runs: int = DEFAULT_RUNS) -> Timing:
    """Median and IQR in milliseconds of ``fn()`` over ``runs`` timed calls."""
    return summarize(sample_runs(fn, setup, warmup, runs))


def summarize(times: list[float]) -> Timing:
    q25, q50, q75 = np.percentile(times, [25, 50, 75])
    return Timing(float(q50), float(q75 - q25), len(times))


def sample_runs(fn, setup: DeviceSetup, warmup: int = DEFAULT_WARMUP, runs: int = DEFAULT_RUNS) -> list[float]:
    """Milliseconds of each of ``runs`` timed calls of ``fn()`` after ``warmup`` untimed ones."""
    times = []
    with torch.no_grad():
        for _ in range(warmup):
            fn()
        if setup.device.type == "cuda":
            torch.cuda.synchronize(setup.device)
            for _ in range(runs):
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
        elif setup.reference is not None:
            times = setup.reference.timed_runs(fn, runs)
        else:
            clock = thread_or_wall_clock(setup.clock)
            for _ in range(runs):
                t0 = clock()
                fn()
                times.append((clock() - t0) * 1e3)
    return times


class DeployedConv(nn.Module):
    """One table op as it runs after BN folding: conv with bias, [+ residual], activation."""

    def __init__(self, op: ConvOp, act: str | None = None):
        super().__init__()
        groups = op.in_channels if op.kind == DEPTHWISE else op.groups
        self.conv = nn.Conv2d(op.in_channels, op.out_channels, op.kernel, op.stride,
                              op.kernel // 2, groups=groups, bias=True)
        self.act = get_activation(act)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        y = self.conv(x)
        if residual is not None:
            y = y + residual
        return self.act(y)


def measure_op(op: ConvOp, setup: DeviceSetup, batch: int = 1, warmup: int = DEFAULT_WARMUP,
               runs: int = DEFAULT_RUNS, act: str | None = None, seed: int = 0) -> Timing:
    """Time one op on ``batch`` inputs of its shape."""
    if setup.runtime is not None and setup.runtime.op_timing == "in-chain":
        graph, inputs = onnx_graphs.op_chain_graph(op, batch, act, seed)
        # The profiler times the op's own nodes: no per-call floor in them to take off.
        return summarize(profiled_runs(setup.runtime.profile(graph, inputs), setup, warmup, runs))
    if setup.runtime is not None:
        graph, inputs = onnx_graphs.op_graph(op, batch, act, seed)
        timing = time_runs(setup.runtime.compile(graph, inputs), setup, warmup, runs)
        # A network pays the per-call floor once, not once per op (see runtimes.py).
        return replace(timing, median_ms=max(timing.median_ms - setup.dispatch_floor_ms, MIN_OP_MS))
    gen = torch.Generator().manual_seed(seed)
    if op.kind == AVGPOOL:  # the shortcut pooling of a stride-2 residual unit (see netops)
        module = nn.AvgPool2d(op.kernel, op.stride, ceil_mode=True)
    else:
        module = DeployedConv(op, act).eval().to(setup.device, setup.dtype)
    x = torch.randn(batch, op.in_channels, op.height, op.width, generator=gen)
    x = x.to(setup.device, setup.dtype)
    if op.fused_residual:
        r = torch.randn(batch, op.out_channels, op.out_height, op.out_width, generator=gen)
        r = r.to(setup.device, setup.dtype)
        return time_runs(lambda: module(x, r), setup, warmup, runs)
    return time_runs(lambda: module(x), setup, warmup, runs)


def profiled_runs(run, setup: DeviceSetup, warmup: int, runs: int) -> list[float]:
    """The milliseconds ``run()`` reports for each of ``runs`` calls after ``warmup`` (a runtime's
    own per-node counters), put on the nominal speed like timed runs when calibrated."""
    for _ in range(warmup):
        run()
    before = setup.reference.sample() if setup.reference is not None else None
    times = [run() for _ in range(runs)]
    if before is None:
        return times
    factor = setup.reference.factor(before, setup.reference.sample())
    return [t * factor for t in times]


def measure_network(arch: Arch, resolution: int, setup: DeviceSetup, batch: int = 1,
                    warmup: int = DEFAULT_WARMUP, runs: int = DEFAULT_RUNS, seed: int = 0) -> Timing:
    """Time a whole backbone end to end on a ``batch`` x C x R x R input."""
    return summarize(sample_network(arch, resolution, setup, batch, warmup, runs, seed))


def sample_network(arch: Arch, resolution: int, setup: DeviceSetup, batch: int = 1,
                   warmup: int = DEFAULT_WARMUP, runs: int = DEFAULT_RUNS, seed: int = 0) -> list[float]:
    """The timed runs of ``measure_network``, unsummarised (validate pools several rounds)."""
    return sample_runs(network_runner(arch, resolution, setup, batch, seed), setup, warmup, runs)


def network_runner(arch: Arch, resolution: int, setup: DeviceSetup, batch: int = 1, seed: int = 0):
    """A callable running the whole deployed backbone once on a fixed input; in a runtime the
    graph is exported and compiled here, once, however many rounds time it."""
    if setup.runtime is not None:
        graph, inputs = onnx_graphs.network_graph(arch, resolution, batch, seed)
        return setup.runtime.compile(graph, inputs)
    gen = torch.Generator().manual_seed(seed)
    model = deployed_backbone(arch).to(setup.device, setup.dtype)
    x = torch.randn(batch, arch.in_channels, resolution, resolution, generator=gen)
    x = x.to(setup.device, setup.dtype)
    return lambda: model(x)


def detector_runner(recipe, size: int, setup: DeviceSetup, batch: int = 1, seed: int = 0):
    """A callable running the whole fused detector (raw head outputs) once on a fixed input,
    compiled once so its timed runs can be spread over several rounds."""
    if setup.runtime is not None:
        graph, inputs = onnx_graphs.detector_graph(recipe, size, batch, seed)
        return setup.runtime.compile(graph, inputs)
    model = onnx_graphs.RawHead(onnx_graphs.seeded_detector(recipe, seed)).to(setup.device, setup.dtype)
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))
    x = x.to(setup.device, setup.dtype)
    return lambda: model(x)
