"""`tinynas design`: every stage on generated data, resumed after SIGKILLs, its report checked
against the run folders it was made from."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tinynas.cli import main
from tinynas.data.synthetic import make_synthetic_dataset
from tinynas.detect.model_recipe import load_model_recipe
from tinynas.latency.detector_model import DetectorLatencyModel
from tinynas.resources import resolve_space_path
from tinynas.space import load_space
from tinynas.design import DesignSpec
from tinynas.design.report import choose
from tinynas.design.spec import check_spec, read_data_section
from tinynas.errors import UserError

pytest.importorskip("onnxruntime")

TINY_MODEL = {
    "name": "tiny",
    "backbone": {"arch": "tinynas-n", "wrap": "res", "out_indices": [2, 4, 5], "focus": True, "act": "relu"},
    "neck": {"depth": 1.0, "hidden_ratio": 1.0, "out_channels": [16, 32, 64], "act": "relu"},
    "head": {"num_classes": 3, "reg_max": 16, "strides": [8, 16, 32]},
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("design")
    data = make_synthetic_dataset(root / "data", images=24, val_images=8, size=64, seed=0)
    data_yaml = root / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({
        "train_images": "data/images/train", "train_annotations": "data/annotations/train.json",
        "val_images": "data/images/val", "val_annotations": "data/annotations/val.json"}))
    model = root / "tiny.yaml"
    model.write_text(yaml.safe_dump(TINY_MODEL))
    # A small onnxruntime table of every detector the k1kx space can make inside the tiny model.
    table = root / "tiny-ort.csv"
    assert main(["latency", "build", "--space", "k1kx", "--model", str(model), "--size", "64",
                 "--channel-step", "256", "--runtime", "onnxruntime", "--runs", "3", "--warmup", "1",
                 "--out", str(table)]) == 0
    # Tight enough that the initial backbone breaks it, so the rungs' searches differ.
    predictor = DetectorLatencyModel(str(table), load_model_recipe(str(model)))
    budget = round(0.8 * predictor.predict_detector_ms(load_space(resolve_space_path("k1kx")).initial, 64), 3)
    return root, data, data_yaml, model, table, budget


def _cli(*args, cwd=None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "tinynas", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _kill_when(process: subprocess.Popen, record: Path, stage: str, timeout: float = 600) -> None:
    """SIGKILL ``process`` as soon as ``stage`` is recorded as finished (the next one starting)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if record.is_file():
            try:
                if stage in json.loads(record.read_text()):
                    process.send_signal(signal.SIGKILL)
                    process.wait()
                    return
            except ValueError:
                pass  # caught mid-replace: read again
        if process.poll() is not None:
            raise AssertionError(f"finished before it could be killed after {stage}:\n{process.stdout.read()}")
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"{stage} never finished")


def test_design_runs_every_stage_resumes_after_kills_and_reports_what_the_folders_hold(workspace, tmp_path):
    from tinynas.checkpoint import load_detector
    from tinynas.deploy.onnx_export import compare_with_torch
    from tinynas.train.run import TrainRun

    root, data, data_yaml, model, table, budget = workspace
    out = tmp_path / "design"
    args = ["design", str(data_yaml), "--budget", f"latency={budget}ms", "--latency-db", str(table), "--model", str(model),
            "--candidates", "300",
            "--epochs", "2", "--size", "64", "--batch-size", "8", "--timed-runs", "6", "--out", str(out), "--quiet"]
    first = _cli(*args)
    _kill_when(first, out / "stages.json", "search")  # killed as training starts
    candidates = out / "search" / "candidates.csv"
    search_stamp = candidates.stat().st_mtime_ns
    second = _cli(*args)
    _kill_when(second, out / "stages.json", "train")  # killed as export and timing start
    second_log = second.stdout.read()
    assert "search: finished earlier, skipped" in second_log
    assert candidates.stat().st_mtime_ns == search_stamp
    from tinynas.design.train import distinct_rungs

    # The ladder's three rungs, less those that found a smaller rung's network (this tiny space
    # tops out below 4x the budget): each distinct one is trained once.
    from tinynas.design.stages import read_record

    kept, merged = distinct_rungs(read_record(out)["search"]["rungs"])
    assert len(kept) + len(merged) == 3
    trained = {p.parent.name: p.stat().st_mtime_ns for p in (out / "train").glob("*/last.pt")}
    # --baselines auto (the default): a distilled model whose teacher's worth fell short of the full
    # weight is also trained without its teacher (these 2-epoch teachers lead by little)
    plain = {name for name in trained if name.endswith("-plain")}
    assert len(trained) - len(plain) == len(kept) and len(plain) <= len(kept) - 1
    third = _cli(*args)
    log = third.communicate(timeout=600)[0]
    assert third.returncode == 0, log
    assert "train: finished earlier, skipped" in log
    assert {p.parent.name: p.stat().st_mtime_ns for p in (out / "train").glob("*/last.pt")} == trained

    stored = json.loads((out / "stages.json").read_text())
    # Paths inside the folder are stored relative to it: a moved design folder still resumes.
    assert stored["train"]["models"][0]["run"].startswith("./train/") and str(out) not in json.dumps(stored)
    record = read_record(out)
    rows = record["report"]["models"]
    assert [r["budget_ms"] for r in rows] == pytest.approx(sorted((r["limit_ms"] for r in kept), reverse=True))
    assert rows[-1]["budget_ms"] == pytest.approx(budget)  # teachers first, the budget's own rung last
    assert rows[-1]["predicted_ms"] <= budget < rows[0]["predicted_ms"]  # the search met each rung's budget
    report = (out / "report.md").read_text()
    assert all(r["ratio"] == pytest.approx(r["measured_ms"] / r["predicted_ms"]) for r in rows)
    assert "| measured / predicted |" in report
    # Each model's diagnostics are linked, relative to the report; the deployed model is marked.
    assert "## Diagnostics of each model's best weights on the val split" in report
    for row in rows:
        link = f"{Path(row['run']).relative_to(out).as_posix()}/confusion_matrix.png"
        assert f"[confusion matrix]({link})" in report and (out / link).is_file()
    assert ("Warning: the latency table missed" in report) == any(abs(r["ratio"] - 1) > 0.15 for r in rows)
    assert all(f"Rung `{m['rung']}`" in report and f"found `{m['into']}`'s architecture" in report for m in merged)
    for row in rows:
        run = Path(row["run"])
        metrics = [r for r in (run / "metrics.csv").read_text().splitlines()[1:] if r]
        header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
        aps = [float(dict(zip(header, line.split(",")))["AP"]) for line in metrics
               if dict(zip(header, line.split(","))).get("AP")]
        assert row["AP"] == pytest.approx(max(aps))
        measured = json.loads((out / "measure" / f"{row['model']}.json").read_text())
        assert row["measured_ms"] == pytest.approx(float(np.median(measured["samples_ms"])))
        assert f"{row['measured_ms']:.4g}" in report
        assert row["predicted_ms"] > 0
    chosen = choose(rows, budget)
    if chosen is None:
        assert f"No model meets the {budget:g} ms budget" in report
        assert not (out / "deploy" / "model.onnx").exists()
    else:
        assert f"Deployed: `{chosen['model']}`" in report
        detector, _ = load_detector(TrainRun(chosen["run"]).best_checkpoint())
        # The deployed file is the one timed, and it computes what the trained weights compute.
        assert compare_with_torch(out / "deploy" / "model.onnx", detector, size=64) < 1e-4
        assert json.loads((out / "deploy" / "classes.json").read_text()) == list(data.classes)
    for figure in ("ap_vs_latency.png", "predicted_vs_measured.png", "training_curves.png"):
        assert (out / figure).stat().st_size > 1000
        assert figure in report


def test_a_rerun_with_other_settings_is_refused(workspace, tmp_path):
    from tinynas.design.spec import spec_change, store_spec

    _, _, data_yaml, model, table, _ = workspace
    spec = check_spec(DesignSpec(str(data_yaml), "latency=3ms", model=str(model), db=str(table)))
    assert spec_change(tmp_path, spec, started=False) == "new"
    store_spec(tmp_path, spec)
    assert spec_change(tmp_path, spec, started=True) == "same"  # the same settings resume
    other = check_spec(DesignSpec(str(data_yaml), "latency=3ms", model=str(model), db=str(table), epochs=5))
    with pytest.raises(UserError, match=r"design.json: epochs: this folder holds a design with epochs = 100.*--force"):
        spec_change(tmp_path, other, started=True)
    assert spec_change(tmp_path, other, started=True, force=True) == "replace"
    assert spec_change(tmp_path, other, started=False) == "replace"  # nothing came of the stored design


@pytest.mark.parametrize("change, message", [
    ({"budget": "params=2M"}, r"--budget: a design budgets the deployed detector's latency"),
    ({"teacher_factors": (0.5,)}, r"--teacher-factors: expected factors above 1"),
    ({"size": 100}, r"--size: must be a multiple of 32"),
    ({"runtime": "tvm"}, r"--runtime: unknown runtime 'tvm' \(known: torch, onnxruntime, openvino, tensorrt\)"),
    ({"latency_db": "cpu-fp32"}, r"cpu-fp32.json: runtime: the table was measured in torch, the design deploys in onnxruntime"),
    ({"budgets": ("latency=2ms",)}, r"--backbone-budget: the latency budget is --budget"),
])
def test_bad_settings_are_one_line_errors(workspace, change, message):
    _, _, data_yaml, model, _, _ = workspace
    spec = DesignSpec(**{"data": str(data_yaml), "budget": "latency=3ms", "model": str(model), **change})
    with pytest.raises(UserError, match=message):
        check_spec(spec)


def test_the_data_file_names_its_missing_field(tmp_path):
    bad = tmp_path / "data.yaml"
    bad.write_text(yaml.safe_dump({"train_images": "x", "val_images": "y"}))
    with pytest.raises(UserError, match=re.escape(f"{bad}: train_images: ")):
        read_data_section(bad)
    (tmp_path / "x").mkdir()
    with pytest.raises(UserError, match=re.escape(f"{bad}: train_annotations: missing")):
        read_data_section(bad)


def _row(model, ms, ap, ap_plain=math.nan, teacher="t"):
    return {"model": model, "measured_ms": ms, "AP": ap, "AP50": ap, "AP_plain": ap_plain, "AP50_plain": ap_plain,
            "teacher": teacher, "run": f"runs/{model}", "plain_run": f"runs/{model}-plain", "onnx": f"{model}.onnx"}


def test_the_chosen_model_is_the_most_accurate_within_the_measured_budget():
    rows = [_row("a", 2.0, 0.3), _row("b", 2.9, 0.4), _row("c", 3.2, 0.6), _row("d", 1.0, math.nan)]
    assert choose(rows, 3.0)["model"] == "b"
    assert choose(rows, 0.5) is None
    # A --baselines model trained without its teacher is a candidate at its twin's latency.
    rows[0] = _row("a", 2.0, 0.3, ap_plain=0.45)
    chosen = choose(rows, 3.0)
    assert (chosen["model"], chosen["AP"], chosen["run"], chosen["onnx"]) == ("a-plain", 0.45, "runs/a-plain", "")
    rows[0] = _row("a", 2.0, 0.45, ap_plain=0.45)  # a tie: the distilled one
    assert choose(rows, 3.0)["model"] == "a"


def test_rungs_that_found_the_same_network_are_trained_once(tmp_path):
    from tinynas.design.train import distinct_rungs

    def rung(label, limit, blocks):
        path = tmp_path / f"{label}.yaml"
        path.write_text(yaml.safe_dump({"blocks": blocks}))
        return {"label": label, "limit_ms": limit, "arch": str(path)}

    small = [{"class": "ConvKXBNRELU", "in": 12, "out": 16, "s": 1, "k": 3}]
    large = [{"class": "ConvKXBNRELU", "in": 12, "out": 32, "s": 1, "k": 3}]
    rungs = [rung("best-latency88ms", 88, large), rung("best-latency22ms", 22, small), rung("best-latency44ms", 44, large)]
    kept, merged = distinct_rungs(rungs)
    assert [r["label"] for r in kept] == ["best-latency22ms", "best-latency44ms"]
    assert merged == [{"rung": "latency88ms", "limit_ms": 88, "into": "latency44ms"}]


def test_a_budget_matched_to_an_onnx_file_is_that_file_measured_in_the_runtime(workspace, tmp_path):
    from tinynas.deploy.onnx_export import export_onnx
    from tinynas.detect.detector import Detector

    root, _, data_yaml, model, table, _ = workspace
    peer = tmp_path / "current-model.onnx"
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    # The shipped tinynas-n at 64 px (~2 ms here): slower than the tiny model's smallest detectors.
    export_onnx(Detector(load_model_recipe("tinynas-n")).eval(), peer, size=64)
    out = tmp_path / "design"
    args = ["design", str(data_yaml), "--budget", f"latency=match:{peer}", "--latency-db", str(table), "--model", str(model),
            "--teacher-factors", "2", "--candidates", "200", "--epochs", "1", "--size", "64", "--batch-size", "8",
            "--timed-runs", "3", "--out", str(out), "--no-baselines", "--quiet"]  # the match is the point
    first = _cli(*args)
    log = first.communicate(timeout=600)[0]
    assert first.returncode == 0, log
    match = json.loads((out / "match.json").read_text())
    assert match["settings"] == {"runtime": "onnxruntime", "db": str(table), "size": 64}
    assert match["timing"]["threads"] == 1 and match["timing"]["table"] == str(table.resolve())
    assert f"budget: {peer} measures {match['measured_ms']:.3f} ms in onnxruntime" in log
    # The anchor (the tiny recipe's own detector) timed beside it converts the table's ms.
    anchor = match["anchor"]
    assert match["table_scale"] == pytest.approx(anchor["predicted_ms"] / anchor["measured_ms"])
    predictor = DetectorLatencyModel(str(table), load_model_recipe(str(model)))
    assert anchor["predicted_ms"] == pytest.approx(predictor.predict_detector_ms(
        load_model_recipe(str(model)).backbone.arch, 64))
    # The design searched and judged at that latency: its budget is the file's median.
    assert json.loads((out / "design.json").read_text())["budget"] == f"latency={match['measured_ms']:.4f}ms"
    from tinynas.design.stages import read_record

    stages = read_record(out)
    rows = stages["report"]["models"]
    # (the ladder's limits go through the table's ms, written to 6 significant digits, and back;
    # the 2x rung is trained only when it found a network of its own)
    from tinynas.design.train import distinct_rungs

    kept, _ = distinct_rungs(stages["search"]["rungs"])
    assert sorted(r["budget_ms"] for r in rows) == pytest.approx(
        [round(match["measured_ms"], 4), 2 * round(match["measured_ms"], 4)][:len(kept)], rel=1e-4)
    # The search met each rung in the table's ms; the design reports them in ms measured here.
    for rung in stages["search"]["rungs"]:
        assert rung["table_limit_ms"] == pytest.approx(rung["limit_ms"] * match["table_scale"], rel=1e-3)
        assert rung["table_predicted_ms"] <= rung["table_limit_ms"]
        assert rung["predicted_ms"] == pytest.approx(rung["table_predicted_ms"] / match["table_scale"])
    # A rerun keeps the measured budget (timing again would change it, and the folder refuse it).
    again = _cli(*args)
    log = again.communicate(timeout=600)[0]
    assert again.returncode == 0, log
    assert f"measured {match['measured_ms']:.3f} ms earlier" in log and "report: finished earlier" in log

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    for budget, message in ((f"latency=match:{bad}", f"{bad}: --budget: not a readable ONNX model"),
                            (f"latency=match:{peer}", "has height 64, but the comparison runs at 96")):
        size = "96" if "height" in message else "64"
        proc = _cli("design", str(data_yaml), "--budget", budget, "--latency-db", str(table), "--model", str(model),
                    "--size", size, "--out", str(tmp_path / "refused"))
        text = proc.communicate(timeout=120)[0]
        assert proc.returncode == 2 and message in text and len(text.strip().splitlines()) == 1, text
        assert not (tmp_path / "refused" / "design.json").exists()


def test_a_design_on_another_cpu_fits_the_table_first_unless_told_not_to(workspace, tmp_path, monkeypatch, capsys):
    import shutil

    from tinynas.latency import machine
    from tinynas.latency.table import sidecar_path

    root, data, data_yaml, model, table, budget = workspace
    mine = tmp_path / "t.csv"
    shutil.copy(table, mine)
    shutil.copy(sidecar_path(table), sidecar_path(mine))
    monkeypatch.setattr(machine, "cpu_name", lambda: "Another CPU (x86_64)")
    args = ["design", str(data_yaml), "--budget", "latency=0.001ms", "--latency-db", str(mine), "--model", str(model),
            "--size", "64", "--out", str(tmp_path / "d"), "--quiet"]
    assert main([*args, "--no-calibrate"]) == 2  # the budget is impossible: refused after the note
    err = capsys.readouterr().err
    assert "note: latency table t: measured on" in err and "tinynas latency calibrate" in err
    assert "machines" not in json.loads(sidecar_path(mine).read_text())

    assert main(args) == 2
    out, err = capsys.readouterr()
    assert "calibrate: the table t was measured on another machine; fitting it to this one" in out
    assert "calibrate: MAPE" in out and "stored in its sidecar for Another CPU (x86_64)" in out
    fit = json.loads(sidecar_path(mine).read_text())["machines"]["Another CPU (x86_64)"]
    assert len(fit["models"]) == 8 and fit["size"] == 64 and fit["scale"] > 0
    assert "note: latency table" not in err  # fitted here now: nothing to warn about
