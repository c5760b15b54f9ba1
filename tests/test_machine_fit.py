"""``tinynas latency calibrate``: a table measured on another CPU, fitted to this one."""

from __future__ import annotations

import json
import shutil

import pytest

from tinynas.api import calibrate_latency_table
from tinynas.cli import main
from tinynas.errors import UserError
from tinynas.latency import machine
from tinynas.latency.machine_fit import table_detectors
from tinynas.latency.predictor import LatencyPredictor, load_predictor
from tinynas.latency.table import load_table, resolve_table_path, sidecar_path

HERE = "Other CPU 9000 (x86_64)"


@pytest.fixture
def foreign_table(tmp_path, monkeypatch):
    """The shipped ORT table, as seen from a machine it was not measured on."""
    source = resolve_table_path("cpu-ort-fp32-tinynas-n")
    path = tmp_path / "t.csv"
    shutil.copy(source, path)
    shutil.copy(sidecar_path(source), sidecar_path(path))
    monkeypatch.setattr(machine, "cpu_name", lambda: HERE)
    return path


def test_the_table_names_the_detectors_it_was_built_for():
    meta = load_table("cpu-ort-fp32-tinynas-n").meta
    assert table_detectors(meta)[:2] == [("tinynas-n", 320, "k1kx"), ("tinynas-p", 320, "k1kx")]
    assert table_detectors({"builds": [{"models": ["odd text"]}]}) == []


def test_calibrate_fits_the_table_to_this_machine_and_only_here(foreign_table, monkeypatch, capsys):
    note = machine.mismatch_note(foreign_table)
    assert note and f"this machine is {HERE}" in note and "tinynas latency calibrate --latency-db" in note
    raw = LatencyPredictor(load_table(foreign_table))
    assert raw.machine_fit is None and raw.scale == 1.0

    fit = calibrate_latency_table(foreign_table, n=3, runs=4, rounds=1, progress=False)
    stored = json.loads(sidecar_path(foreign_table).read_text())["machines"][HERE]
    assert stored["scale"] == pytest.approx(fit["scale"]) and stored["overhead_ms"] == pytest.approx(fit["overhead_ms"])
    assert len(stored["models"]) == 3 and stored["models"][0] == "tinynas-n" and stored["size"] == 320
    # Three detectors and two parameters: the fit is at least as good as the table as it was.
    assert fit["after_in_sample"]["mape_pct"] <= fit["before"]["mape_pct"] + 1e-9

    fitted = load_predictor(foreign_table)
    assert (fitted.scale, fitted.overhead_ms) == (stored["scale"], stored["overhead_ms"])
    assert LatencyPredictor(load_table(foreign_table), for_this_machine=False).scale == 1.0
    assert machine.mismatch(load_table(foreign_table).meta) == [] and machine.mismatch_note(foreign_table) is None

    assert main(["latency", "list", str(foreign_table)]) == 0
    listed = next(line for line in capsys.readouterr().out.splitlines() if str(foreign_table) in line)
    assert listed.split()[-1] == "calibrated"

    monkeypatch.setattr(machine, "cpu_name", lambda: "A third CPU (x86_64)")
    assert load_predictor(foreign_table).scale == 1.0  # another machine keeps the table's own fit
    assert machine.mismatch_note(foreign_table) is not None


def test_calibrate_from_the_command_line_prints_before_and_after(foreign_table, capsys):
    assert main(["latency", "calibrate", "--latency-db", str(foreign_table), "-n", "3", "--runs", "3",
                 "--rounds", "1", "--no-store", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "3 detectors at 320 px, timed on Other CPU 9000" in out and "table as it was:   MAPE" in out
    assert "fitted here:" in out and "leave-one-out" in out and out.strip().endswith("not stored")
    assert "machines" not in json.loads(sidecar_path(foreign_table).read_text())


@pytest.mark.parametrize("argv, words", [
    (["-n", "2"], "-n: a scale and an overhead need at least 3 detectors, got 2"),
    (["--model", "no-such-model"], "no-such-model"),
    (["--size", "100"], "--size: must be a multiple of 32"),
])
def test_bad_calibrate_arguments_are_one_line(foreign_table, capsys, argv, words):
    assert main(["latency", "calibrate", "--latency-db", str(foreign_table), *argv, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]


def test_a_gpu_table_is_not_calibrated_on_a_cpu():
    with pytest.raises(UserError, match="calibrate fits CPU tables to this CPU"):
        calibrate_latency_table("v100-trt-fp16-damoyolo", model="tinynas-n", n=3, store=False, progress=False)


def test_a_sidecar_with_a_broken_machine_fit_is_refused(foreign_table):
    meta = json.loads(sidecar_path(foreign_table).read_text())
    meta["machines"] = {HERE: {"scale": -1.0, "overhead_ms": 0.0}}
    sidecar_path(foreign_table).write_text(json.dumps(meta))
    with pytest.raises(UserError, match="machines: .*scale > 0"):
        load_table(foreign_table)
