"""Dividing out how fast a shared CPU happens to be at the moment of a measurement.

On a virtual machine whose physical cores are shared with other tenants, the same network in
the same idle process takes 10-25% longer in one minute than in the next, and the thread's
CPU-time clock cannot see why (the core is busy with a sibling, the cache is thrashed). Those
swings are larger than the differences a table must rank, and they make a table built in one
hour disagree with networks timed in the next.

A fixed reference convolution timed right before and right after a stretch of measured runs
slows down with them (their times correlate at 0.6-0.85 on the machine this was written on).
Each run is divided by the reference's time around it and multiplied by the reference's
*nominal* time, fixed once when a table is built and stored in its sidecar. Every op of the
table and every network that ``validate`` times are then on one scale: milliseconds at the
machine's speed when the table was started.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

REFERENCE = "conv2d 64->64 k3 s1 p1 with bias on a 1x64x80x80 input, minimum of 3 runs"
NOMINAL_SAMPLES = 31
# Refresh the reference after this much measured time: the speed drifts over about a second,
# and a reference (3 x ~5 ms) per few-millisecond op would triple the cost of a build.
CHUNK_MS = 50.0


class SpeedReference:
    """Times the reference conv with the setup's clock and converts runs to nominal speed."""

    def __init__(self, device: torch.device, dtype: torch.dtype, clock, nominal_ms: float | None = None):
        gen = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(64, 64, 3, 1, 1, bias=True).eval().to(device, dtype)
        self.x = torch.randn(1, 64, 80, 80, generator=gen).to(device, dtype)
        self.clock = clock
        self.nominal_ms = nominal_ms

    def sample(self) -> float:
        """Milliseconds of the reference now: the minimum of 3 runs (the least disturbed)."""
        best = float("inf")
        with torch.no_grad():
            for _ in range(3):
                t0 = self.clock()
                self.conv(self.x)
                best = min(best, (self.clock() - t0) * 1e3)
        return best

    def fix_nominal(self) -> float:
        """Set the nominal time to the median of fresh samples (once, when a table starts)."""
        self.sample()  # warm-up
        self.nominal_ms = float(np.median([self.sample() for _ in range(NOMINAL_SAMPLES)]))
        return self.nominal_ms

    def record(self) -> dict:
        return {"reference": REFERENCE, "nominal_ms": self.nominal_ms, "chunk_ms": CHUNK_MS}

    def factor(self, before: float, after: float) -> float:
        """What turns a run timed between reference samples ``before`` and ``after`` into nominal speed."""
        return self.nominal_ms / ((before + after) / 2)

    def timed_runs(self, fn, runs: int) -> list[float]:
        """``runs`` timings of ``fn()`` in milliseconds at nominal speed."""
        if self.nominal_ms is None:
            self.fix_nominal()
        out: list[float] = []
        pending: list[float] = []
        before = self.sample()
        for i in range(runs):
            t0 = self.clock()
            fn()
            pending.append((self.clock() - t0) * 1e3)
            if sum(pending) >= CHUNK_MS or i == runs - 1:
                after = self.sample()
                factor = self.factor(before, after)
                out += [t * factor for t in pending]
                pending, before = [], after
        return out


def thread_or_wall_clock(name: str):
    return time.thread_time if name == "thread-cpu" else time.perf_counter
