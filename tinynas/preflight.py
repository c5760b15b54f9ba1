"""Preflight: every optional package a job will need, checked before its first stage.

A design exports ONNX in its measure stage, after a search and trainings that can take an
hour; a missing exporter found only there loses nothing (the rerun resumes) but wastes the
wait. Each job states what it needs here, and all that is missing is named in one line with
the install line that brings it, before anything runs. Packages are looked up, not imported.
"""

from __future__ import annotations

import importlib.util
from typing import Iterable

from .errors import UserError

# The pyproject extra that installs each optional package.
EXTRA_OF = {"onnx": "export", "onnxscript": "export", "onnxruntime": "export", "openvino": "openvino",
            "ray": "ray", "tensorboard": "tensorboard"}
EXPORTER = ("onnx", "onnxscript")
RUNTIME_PACKAGES = {"torch": (), "onnxruntime": ("onnxruntime",), "tensorrt": ("onnxruntime",),
                    "openvino": ("openvino",)}


def missing_packages(packages: Iterable[str]) -> list[str]:
    """The ``packages`` that cannot be imported here, in order, each once."""
    missing = []
    for name in dict.fromkeys(packages):
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a broken install reads as missing
            found = False
        if not found:
            missing.append(name)
    return missing


def install_line(packages: Iterable[str]) -> str:
    extras = sorted({EXTRA_OF[name] for name in packages if name in EXTRA_OF})
    return f"pip install -e \".[{','.join(extras)}]\"" if extras else f"pip install {' '.join(packages)}"


def require(packages: Iterable[str], job: str, why: str) -> None:
    """Refuse ``job`` in one line when any of ``packages`` is missing, saying ``why`` it needs them."""
    missing = missing_packages(packages)
    if missing:
        raise UserError(job, "dependencies", f"{why} needs {', '.join(missing)}, not installed here: "
                        f"{install_line(missing)}")


def design_packages(runtime: str) -> tuple[str, ...]:
    """A design exports every model to ONNX and times it in ``runtime``."""
    return (*EXPORTER, *RUNTIME_PACKAGES.get(runtime, ()))


def table_build_packages(runtime: str) -> tuple[str, ...]:
    """A table of a deployment runtime times each op as an ONNX graph in it; torch's needs none."""
    return () if runtime == "torch" else (*EXPORTER, *RUNTIME_PACKAGES.get(runtime, ()))
