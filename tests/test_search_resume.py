"""Resume equals uninterrupted: a killed or crashed search continues to the same result."""

import json
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from test_search import OpTableLatency
from tinynas import UserError
from tinynas.cli import main
from tinynas.search import resume, search
from tinynas.space import load_space

SEARCH_ARGS = ["search", "--space", "k1kx", "--budget", "flops=8G", "--budget", "layers=25",
               "--candidates", "20000", "--population", "64", "--batch-size", "500",
               "--checkpoint-every", "2000", "--seed", "7", "--quiet"]


def read_checkpoint(run_dir):
    try:
        return json.loads((run_dir / "checkpoint.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def test_killed_cli_run_resumes_to_the_uninterrupted_result(tmp_path):
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "tinynas", *SEARCH_ARGS, "--out", str(killed)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            doc = read_checkpoint(killed)
            if doc and doc["counters"]["candidates"] >= 2000:
                break
            time.sleep(0.01)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -9, "the run ended before it could be killed part-way"
    at_kill = read_checkpoint(killed)
    assert 2000 <= at_kill["counters"]["candidates"] < 20000

    assert main(["search", "--resume", str(killed), "--quiet"]) == 0
    full = tmp_path / "full"
    assert main([*SEARCH_ARGS, "--out", str(full)]) == 0

    assert (killed / "candidates.csv").read_bytes() == (full / "candidates.csv").read_bytes()
    assert (killed / "best.yaml").read_text() == (full / "best.yaml").read_text()
    resumed, uninterrupted = read_checkpoint(killed), read_checkpoint(full)
    assert resumed["populations"] == uninterrupted["populations"]
    assert resumed["rng_state"] == uninterrupted["rng_state"]
    assert resumed["counters"] == uninterrupted["counters"]
    segments = json.loads((killed / "summary.json").read_text())["timings"]["segments"]
    assert len(segments) == 2 and segments[1]["from_candidate"] == at_kill["counters"]["candidates"]


class CrashingLatency(OpTableLatency):
    """Dies part-way through a batch, like a machine going down mid-run."""

    def __init__(self, crash_after):
        super().__init__()
        self.crash_after = crash_after

    def predict_ms(self, arch, resolution):
        if sum(self.calls.values()) >= self.crash_after:
            raise RuntimeError("simulated crash")
        return super().predict_ms(arch, resolution)


def test_crash_with_a_latency_model_resumes_with_the_same_model(tmp_path):
    limit = 1.5 * OpTableLatency().predict_ms(load_space(ROOT / "search_spaces" / "k1kx.yaml").initial, 320)
    kwargs = dict(population=24, candidates=3000, seed=9, batch_size=100, checkpoint_every=700)
    budgets = [f"latency={limit}ms", "layers=20"]
    crashed = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="simulated crash"):
        search("k1kx", budgets, latency=CrashingLatency(crash_after=1500), out=crashed, **kwargs)
    at_crash = read_checkpoint(crashed)
    assert 0 < at_crash["counters"]["candidates"] < 3000
    # Rows written after the last checkpoint are cut back and regenerated identically.
    assert (crashed / "candidates.csv").stat().st_size >= at_crash["csv"]["bytes"]

    with pytest.raises(UserError, match="pass the same one again"):
        resume(crashed)
    resumed = resume(crashed, latency=OpTableLatency())
    full = search("k1kx", budgets, latency=OpTableLatency(), out=tmp_path / "full", **kwargs)
    assert [(m.hash, m.score) for m in resumed.rungs[0].population] == \
        [(m.hash, m.score) for m in full.rungs[0].population]
    assert (crashed / "candidates.csv").read_bytes() == (tmp_path / "full" / "candidates.csv").read_bytes()
    assert (resumed.candidates, resumed.evaluated, resumed.duplicates) == \
        (full.candidates, full.evaluated, full.duplicates)


def test_resume_refuses_a_tampered_log(tmp_path):
    out = tmp_path / "run"
    search("k1kx", ["layers=20"], population=8, candidates=400, checkpoint_every=100, out=out)
    (out / "candidates.csv").write_text("step,hash\n")
    with pytest.raises(UserError) as info:
        resume(out)
    assert "candidates.csv" in info.value.source
