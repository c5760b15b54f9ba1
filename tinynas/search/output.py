"""The run folder: ``candidates.csv`` (append-only log), best architectures, summary, plot.

    runs/<name>/
      candidates.csv       every distinct candidate judged, in the order it was generated
      checkpoint.json      resumable state (see checkpoint.py)
      best.yaml, best.txt  the best architecture (one pair per rung, ``best-<rung>``, for a ladder)
      summary.json         config, seed, versions, device, timings, best results
      pareto.png           score against latency (FLOPs without a latency table)
"""

from __future__ import annotations

import csv
import io
import os
import platform
import sys
from pathlib import Path
from typing import Iterable, Sequence

from ..archio import save_arch
from ..atomic import atomic_write_bytes, atomic_write_text
from ..crashpoints import boundary
from ..fileio import json_text
from ..errors import UserError
from .population import Member

CANDIDATES_NAME = "candidates.csv"
SUMMARY_NAME = "summary.json"
PLOT_NAME = "pareto.png"
COLUMNS = ("step", "hash", "score", "macs", "flops", "params", "layers", "latency_ms",
           "within_budget", "rungs")


class CandidateLog:
    """Appends rows in batches and knows its byte length, so a resume can cut it back."""

    def __init__(self, path: Path, resume_bytes: int | None = None):
        self.path = Path(path)
        if resume_bytes is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            boundary(self.path, "before")
            with open(self.path, "wb") as handle:
                handle.write((",".join(COLUMNS) + "\n").encode())
            boundary(self.path, "after")
        else:
            size = self.path.stat().st_size if self.path.is_file() else -1
            if size < resume_bytes:
                raise UserError(str(self.path), "", f"shorter ({size} bytes) than the checkpoint "
                                f"recorded ({resume_bytes}): the run folder was altered")
            with open(self.path, "r+b") as handle:
                handle.truncate(resume_bytes)
        self._handle = open(self.path, "ab")
        self.bytes = self._handle.tell()

    def append(self, rows: Iterable[Sequence]) -> None:
        lines = []
        for step, digest, score, macs, params, layers, latency, within, rungs in rows:
            lines.append(f"{step},{digest},{'' if score is None else f'{score:.6f}'},{macs},{2 * macs},"
                         f"{params},{layers},{'' if latency is None else f'{latency:.6g}'},"
                         f"{1 if within else 0},{rungs}\n")
        if lines:
            # Not fsynced: rows past the checkpoint's length are cut and regenerated on resume.
            boundary(self.path, "before")
            self._handle.write("".join(lines).encode())
            self._handle.flush()
            self.bytes = self._handle.tell()
            boundary(self.path, "after")

    def close(self) -> None:
        self._handle.close()


def read_hashes(path: Path, upto_bytes: int) -> tuple[set[str], int]:
    """The hashes (and row count) in the first ``upto_bytes`` of a candidates log."""
    with open(path, "rb") as handle:
        data = handle.read(upto_bytes)
    lines = data.decode().splitlines()
    if not lines or lines[0] != ",".join(COLUMNS):
        raise UserError(str(path), "header", "not a tinynas candidates log")
    hashes = {line.split(",", 2)[1] for line in lines[1:]}
    return hashes, len(lines) - 1


def write_best(run_dir: Path, stem: str, member: Member, meta: dict) -> list[str]:
    """``<stem>.yaml`` (tinynas names, with meta) and ``<stem>.txt`` (DAMO-YOLO structure text)."""
    yaml_path, text_path = run_dir / f"{stem}.yaml", run_dir / f"{stem}.txt"
    save_arch(member.arch, yaml_path, meta=meta)
    save_arch(member.arch, text_path, family="damoyolo")
    return [yaml_path.name, text_path.name]


def write_summary(run_dir: Path, summary: dict) -> None:
    atomic_write_text(run_dir / SUMMARY_NAME, json_text(summary, indent=2) + "\n")


def environment() -> dict:
    """Versions and device, recorded next to the results."""
    from ..version import __version__
    versions = {"tinynas": __version__, "python": platform.python_version()}
    for name in ("numpy", "joblib", "torch", "scipy"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "?")
    device = {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
              "system": platform.system(), "cpus": os.cpu_count()}
    return {"versions": versions, "device": device}


def plot_pareto(run_dir: Path, best: Sequence[tuple[str, Member]], use_latency: bool,
                max_points: int = 40000) -> str | None:
    """Scatter of in-budget candidates with their Pareto front; ``None`` without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    xs, ys = [], []
    with open(run_dir / CANDIDATES_NAME, newline="") as handle:
        for row in csv.DictReader(handle):
            if row["within_budget"] == "1" and row["score"]:
                x = row["latency_ms"] if use_latency else row["flops"]
                if x:
                    xs.append(float(x) if use_latency else float(x) / 1e9)
                    ys.append(float(row["score"]))
    if not xs:
        return None
    order = sorted(range(len(xs)), key=lambda i: (xs[i], -ys[i]))
    front_x, front_y, top = [], [], float("-inf")
    for i in order:
        if ys[i] > top:
            top = ys[i]
            front_x.append(xs[i])
            front_y.append(ys[i])
    # Thin the cloud with a fixed stride (not a random sample) so the plot is repeatable.
    stride = max(1, len(xs) // max_points)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ax.scatter(xs[::stride], ys[::stride], s=3, alpha=0.3, color="tab:blue", label="within budget")
    ax.step(front_x, front_y, where="post", color="tab:red", linewidth=1.2, label="Pareto front")
    for label, member in best:
        x = member.latency_ms if use_latency else 2 * member.macs / 1e9
        if x is not None:
            ax.scatter([x], [member.score], marker="*", s=120, color="black", zorder=3)
            ax.annotate(label, (x, member.score), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("predicted latency (ms / image)" if use_latency else "GFLOPs")
    ax.set_ylabel("MAE score")
    ax.set_title("search candidates: score vs " + ("latency" if use_latency else "FLOPs"))
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(run_dir / PLOT_NAME, buffer.getvalue())
    return PLOT_NAME
