"""Deployment runtimes that time ONNX graphs: ONNX Runtime, OpenVINO and TensorRT.

A table timed in eager PyTorch measures PyTorch's kernels and dispatch; a model shipped in
ONNX Runtime or OpenVINO runs other kernels, fuses conv + add + activation, and pays another
per-call cost. A runtime here compiles a static-shape ONNX graph with the settings a
deployment uses and returns a callable that runs it once on inputs bound in advance:

- ``onnxruntime``: every graph optimisation on, sequential execution, a fixed intra-op
  thread count, inputs and outputs bound once (``io_binding``) so a run copies nothing.
- ``openvino``: the ``LATENCY`` performance hint and a fixed inference thread count.
- ``tensorrt``: ONNX Runtime's TensorRT provider at fp16 or int8, with an engine and timing
  cache kept on disk so a resumed build does not rebuild every engine.

With one thread, ONNX Runtime and OpenVINO run a graph inline in the calling thread, so the
thread's CPU clock still times it (see ``measure.py``).

How an op is timed (``op_timing``): ``alone``, its own graph timed by the caller's clock
(onnxruntime, TensorRT), or ``in-chain``: OpenVINO runs a conv in a blocked channels-last layout
and an op compiled alone pays the conversions from and back to the graph's layout, which inside
a network happen only at the ends (ops alone cost 1.75x their share of a network here). So
OpenVINO times the op between a 1x1 conv before and one after (``onnx_graphs.op_chain_graph``)
and reads the op's own nodes from its per-node performance counters (``PERF_COUNT``).
OpenVINO's CPU plugin would also run an "fp32" model in bf16 on a CPU that has it; an fp32
table asks for f32 inference (``INFERENCE_PRECISION_HINT``).

The per-call floor: running any graph costs a fixed dispatch (binding checks, the Python
call, kernel launch bookkeeping) that a network pays once, not once per op. ``dispatch_floor_ms``
measures it on a graph that does almost nothing (an ``Identity`` on one number); each op's
time is stored with the floor taken off, and the floor goes in the sidecar. A network's single
floor is part of the overhead that ``tinynas latency validate`` fits.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import UserError
from ..registry import Registry

# The pip extra that brings each runtime (tensorrt comes with the GPU build of onnxruntime).
EXTRAS = {"onnxruntime": "export", "openvino": "openvino", "tensorrt": "export"}
Runner = Callable[[], None]
# Nodes of the op a chain graph times carry this name prefix (see onnx_graphs.op_chain_graph).
OP_NODE_PREFIX = "op_"


@dataclass
class Runtime:
    """A compiled-graph runtime for one device, precision and thread count."""

    name: str
    version: str
    provider: str
    precision: str
    threads: int
    _compile: Callable = field(repr=False, default=None)
    # For ``op_timing == "in-chain"``: compiles a chain graph into a callable that runs it once
    # and returns its op's nodes as (kernel, milliseconds).
    _profile: Callable | None = field(repr=False, default=None)

    @property
    def op_timing(self) -> str:
        return "alone" if self._profile is None else "in-chain"

    def compile(self, model: bytes, inputs: dict[str, np.ndarray]) -> Runner:
        """A callable that runs ``model`` once on ``inputs`` (bound now, not copied per run)."""
        return self._compile(model, inputs)

    def profile(self, model: bytes, inputs: dict[str, np.ndarray]) -> Callable[[], float]:
        """A callable that runs a chain graph once and returns its op's milliseconds."""
        run = self._profile(model, inputs)
        return lambda: sum(ms for _, ms in run())

    def kernels(self, model: bytes, inputs: dict[str, np.ndarray]) -> list[str]:
        """The kernels the op's nodes of a chain graph ran (``in-chain`` runtimes only)."""
        return [kernel for kernel, _ in self._profile(model, inputs)()]

    def record(self) -> dict:
        return {"runtime": self.name, "runtime_version": self.version, "provider": self.provider,
                "precision": self.precision, "op_timing": self.op_timing}


def load_runtime(name: str, device: str, dtype: str, threads: int, cache_dir: str | os.PathLike | None = None
                 ) -> Runtime | None:
    """The runtime ``name`` (``None`` for torch), or a one-line error naming the extra to install."""
    name = str(name).strip().lower()  # "ONNXRuntime" as the runtime spells itself
    return RUNTIMES.lookup(name)(device, dtype, threads, cache_dir)


def _fp32_only(name: str, dtype: str) -> None:
    if dtype != "fp32":
        raise UserError("--dtype", "", f"{name} tables are measured in fp32 here, got {dtype!r}")


def _load_torch(device: str, dtype: str, threads: int, cache_dir) -> None:
    return None  # eager torch times ops itself (measure.py); there is nothing to compile


def _load_onnxruntime(device: str, dtype: str, threads: int, cache_dir) -> Runtime:
    _fp32_only("onnxruntime", dtype)
    return _onnxruntime("onnxruntime", device, dtype, threads, cache_dir)


def _load_openvino(device: str, dtype: str, threads: int, cache_dir) -> Runtime:
    _fp32_only("openvino", dtype)
    return _openvino(device, threads)


def _load_tensorrt(device: str, dtype: str, threads: int, cache_dir) -> Runtime:
    if not str(device).startswith("cuda"):
        raise UserError("--runtime", "tensorrt", "TensorRT runs on an NVIDIA GPU: give --device cuda[:i]")
    if dtype not in ("fp16", "int8"):
        raise UserError("--dtype", "", f"TensorRT tables are fp16 or int8, got {dtype!r}")
    return _onnxruntime("tensorrt", device, dtype, threads, cache_dir)


def _missing(name: str) -> UserError:
    return UserError("--runtime", name, f"{name} is not installed: pip install -e \".[{EXTRAS[name]}]\"")


def _onnxruntime(name: str, device: str, dtype: str, threads: int, cache_dir) -> Runtime:
    try:
        import onnxruntime as ort
    except ImportError:
        raise _missing(name) from None
    if name == "tensorrt":
        cache = Path(cache_dir or tempfile.gettempdir()) / "tinynas-trt-cache"
        cache.mkdir(parents=True, exist_ok=True)
        index = str(device).partition(":")[2] or "0"
        providers = [("TensorrtExecutionProvider", {
            "device_id": index, "trt_fp16_enable": True, "trt_int8_enable": dtype == "int8",
            "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True, "trt_timing_cache_path": str(cache)})]
    elif str(device).startswith("cuda"):
        providers = [("CUDAExecutionProvider", {"device_id": str(device).partition(":")[2] or "0"})]
    else:
        providers = ["CPUExecutionProvider"]
    wanted = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
    if wanted not in ort.get_available_providers():
        raise UserError("--runtime", name, f"this onnxruntime build has no {wanted} "
                                           f"(available: {', '.join(ort.get_available_providers())})")
    on_gpu = wanted != "CPUExecutionProvider"

    def compile_graph(model: bytes, inputs: dict[str, np.ndarray]) -> Runner:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        session = ort.InferenceSession(model, options, providers=providers)
        binding = session.io_binding()
        where = "cuda" if on_gpu else "cpu"
        index = int(str(device).partition(":")[2] or 0) if on_gpu else 0
        for name_, array in inputs.items():
            binding.bind_ortvalue_input(name_, ort.OrtValue.ortvalue_from_numpy(array, where, index))
        for output in session.get_outputs():
            binding.bind_output(output.name, where, index)

        def run() -> None:
            session.run_with_iobinding(binding)
            if on_gpu:
                binding.synchronize_outputs()
        return run

    return Runtime(name, ort.__version__, wanted, dtype, threads, compile_graph)


def _openvino(device: str, threads: int) -> Runtime:
    try:
        import openvino as ov
    except ImportError:
        raise _missing("openvino") from None
    target = "GPU" if str(device).startswith("cuda") else "CPU"
    core = ov.Core()
    if target not in core.available_devices:
        raise UserError("--device", "", f"OpenVINO sees no {target} here (available: {', '.join(core.available_devices)})")
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if target == "CPU":
        config["INFERENCE_NUM_THREADS"] = threads

    def request_for(model: bytes, inputs: dict[str, np.ndarray], settings: dict):
        # OpenVINO reads ONNX from a file; the compiled model keeps what it needs in memory.
        with tempfile.TemporaryDirectory(prefix="tinynas-ov-") as folder:
            path = Path(folder) / "graph.onnx"
            path.write_bytes(model)
            compiled = core.compile_model(str(path), target, settings)
        request = compiled.create_infer_request()
        for name_, array in inputs.items():
            request.set_tensor(name_, ov.Tensor(np.ascontiguousarray(array)))
        return request

    def compile_graph(model: bytes, inputs: dict[str, np.ndarray]) -> Runner:
        return request_for(model, inputs, config).infer

    def profile_graph(model: bytes, inputs: dict[str, np.ndarray]) -> Callable[[], list[tuple[str, float]]]:
        request = request_for(model, inputs, {**config, "PERF_COUNT": True})
        executed = ov.ProfilingInfo.Status.EXECUTED

        def run() -> list[tuple[str, float]]:
            request.infer()
            # The op's nodes as OpenVINO fused them (conv with its add and activation), plus any
            # layout conversion it put between the conv before and the op.
            nodes = [p for p in request.get_profiling_info()
                     if p.status == executed and (p.node_name.startswith(OP_NODE_PREFIX)
                                                  or f"_{OP_NODE_PREFIX}" in p.node_name)]
            if not nodes:
                raise RuntimeError("OpenVINO's performance counters name no node of the timed op")
            return [(p.exec_type, p.real_time.total_seconds() * 1e3) for p in nodes]
        return run

    return Runtime("openvino", ov.__version__, target, "fp32", threads, compile_graph, profile_graph)


# Name -> loader ``(device, dtype, threads, cache_dir) -> Runtime | None``; register another
# runtime's loader here to time ops and networks in it.
RUNTIMES: Registry[Callable] = Registry("runtime", "--runtime", {
    "torch": _load_torch, "onnxruntime": _load_onnxruntime, "openvino": _load_openvino, "tensorrt": _load_tensorrt,
})
