"""The search reproduces, byte for byte, the candidate logs of the code before its redesign.

The digests below were produced by commit 865926f (the search as one ``_Run`` class, before
the strategy / worker pool / run store split), running these very searches; a change that
moves any draw, duplicate or row of the log changes them.
"""

import hashlib
import json

import pytest

from conftest import ROOT
from tinynas.search import resume, search
from tinynas.search.judge import load_latency_table

CPU_TABLE = ROOT / "latency_db" / "cpu-fp32.csv"

# A ladder of latency limits on the shipped CPU table, two blocks per child; the tightest
# rung is below the initial architecture, so the search first walks down to a seed.
LADDER = dict(budgets=["layers=25"], ladder="latency=40ms,70ms,120ms", population=24, candidates=1500,
              blocks_per_child=2, seed=5, batch_size=200)
LADDER_SHA256 = "08e691a0bd1d35589640157f9cbac12983b249a8485ea77c5d50f83fa5982025"  # by 865926f
LADDER_COUNTERS = (1500, 1181, 1122, 321)  # candidates, evaluated, within budget, duplicates (865926f)
# Fixed FLOPs and layers budgets, bred and judged by two workers.
PLAIN = dict(budgets=["flops=8G", "layers=25"], population=32, candidates=2000, seed=7, batch_size=250)
PLAIN_SHA256 = "e534e5801f0e0838b93f0acc57a6cd7a732275e8b1412aa4e5c22c505af3542a"  # by 865926f
PLAIN_COUNTERS = (2000, 1220, 1181, 781)  # by 865926f


def log_sha256(run_dir):
    return hashlib.sha256((run_dir / "candidates.csv").read_bytes()).hexdigest()


def counters(result):
    return result.candidates, result.evaluated, result.within_budget, result.duplicates


def test_a_latency_ladder_logs_what_the_old_search_logged(tmp_path):
    result = search("k1kx", latency=CPU_TABLE, out=tmp_path / "run", **LADDER)
    assert counters(result) == LADDER_COUNTERS
    assert log_sha256(tmp_path / "run") == LADDER_SHA256


def test_two_workers_log_what_the_old_search_logged(tmp_path):
    result = search("k1kx", jobs=2, out=tmp_path / "run", **PLAIN)
    assert counters(result) == PLAIN_COUNTERS
    assert log_sha256(tmp_path / "run") == PLAIN_SHA256


class CrashingTable:
    """The shipped CPU table, failing after ``crash_after`` predictions like a machine going down."""

    def __init__(self, crash_after):
        self.model = load_latency_table(CPU_TABLE)
        self.left = crash_after

    def predict_ms(self, arch, resolution):
        self.left -= 1
        if self.left < 0:
            raise RuntimeError("simulated crash")
        return self.model.predict_ms(arch, resolution)


def test_a_crashed_ladder_resumes_to_the_old_log(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        search("k1kx", latency=CrashingTable(900), out=run, checkpoint_every=300, **LADDER)
    at_crash = json.loads((run / "checkpoint.json").read_text())["counters"]["candidates"]
    assert 0 < at_crash < LADDER["candidates"]
    result = resume(run, latency=load_latency_table(CPU_TABLE))
    assert counters(result) == LADDER_COUNTERS
    assert log_sha256(run) == LADDER_SHA256
