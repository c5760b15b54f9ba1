"""Is a latency table this machine's? A table measured on another CPU or GPU, or in another
version of its runtime, predicts this machine's ms off by a factor (2x between an AMD EPYC and
an Intel Xeon was seen): the jobs that price with a table say so in one line, and
``tinynas latency list`` marks the tables that were measured here."""

from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path

from ..resources import LATENCY_DIR
from .table import read_meta, sidecar_path

# The sidecar key under which ``latency calibrate`` stores each machine's fit (machine_fit.py).
MACHINES_KEY = "machines"
# The package whose version a runtime's table records.
RUNTIME_PACKAGE = {"onnxruntime": "onnxruntime", "tensorrt": "onnxruntime", "openvino": "openvino"}


def cpu_name() -> str:
    """This machine's CPU as tables record it (``measure.device_name`` for a CPU)."""
    name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            name = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "")
    except OSError:
        pass
    return f"{name or platform.processor() or platform.machine()} ({platform.machine()})"


def installed_version(runtime: str) -> str | None:
    package = RUNTIME_PACKAGE.get(runtime.lower())
    if package is None:
        return None
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_fit(meta: dict) -> dict | None:
    """This machine's fit from ``latency calibrate`` (scale, overhead_ms, date...), if stored."""
    entry = (meta.get(MACHINES_KEY) or {}).get(cpu_name())
    return entry if isinstance(entry, dict) and "scale" in entry else None


def mismatch(meta: dict) -> list[str]:
    """How a table's measuring machine differs from this one, in words (empty: it matches, as
    far as can be told without timing). A GPU table is not compared: its GPU is named where it
    runs, and a CPU machine cannot run it anyway. A table ``latency calibrate`` fitted to this
    machine matches it, as long as the runtime version is the one the fit was timed in."""
    found, fitted = [], machine_fit(meta)
    if str(meta.get("device", "cpu")).startswith("cpu") and meta.get("device_name") not in (None, cpu_name()) \
            and fitted is None:
        found.append(f"measured on {meta['device_name']}, this machine is {cpu_name()}")
    runtime = str(meta.get("runtime") or "torch").lower()
    recorded, here = (fitted or meta).get("runtime_version"), installed_version(runtime)
    if recorded and here and not str(recorded).startswith(here.split("+")[0]):
        found.append(f"timed in {runtime} {recorded}, {here} is installed here")
    return found


def mismatch_note(table_path: str | Path) -> str | None:
    """One line for a job about to price with the table at ``table_path``; None when it matches."""
    found = mismatch(read_meta(table_path))
    if not found:
        return None
    return (f"note: latency table {Path(table_path).stem}: {'; '.join(found)}: its ms may be off by a "
            f"factor here (`tinynas latency calibrate --latency-db {table_path}` fits it to this machine in a "
            "minute; a table built here is best)")


def shipped_tables() -> list[Path]:
    return sorted(p for p in LATENCY_DIR.glob("*.csv") if sidecar_path(p).is_file())
