"""The design job killed at every durable write it passes (the way databases test power loss),
apart from tests/test_crash_points.py so that the two run side by side on the suite's workers.

Stage by stage: from the state its previous stage's end leaves, each write of the stage is
killed before and after, the design is run again to that stage's end, and the folder is
compared with the uninterrupted stage's; the stage ends chain into one whole run, compared with
an uninterrupted one. Two jobs run at a time (one thread each), in two folders with their own
references. The job is tiny (64 px synthetic images, 1 epoch, 60 candidates).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from crash_checks import metrics, no_temporaries, same_values, valid_png
from crash_harness import KILLED, Jobs
from train_helpers import synthetic
from tinynas.crashpoints import WHEN


@pytest.fixture(scope="module")
def jobs():
    runner = Jobs()
    yield runner
    runner.close()


# ---------------------------------------------------------------------------- design
TINY_MODEL = {
    "name": "tiny",
    "backbone": {"arch": "tinynas-n", "wrap": "res", "out_indices": [2, 4, 5], "focus": True, "act": "relu"},
    "neck": {"depth": 1.0, "hidden_ratio": 1.0, "out_channels": [16, 32, 64], "act": "relu"},
    "head": {"num_classes": 3, "reg_max": 16, "strides": [8, 16, 32]},
}
# Measured timings differ from run to run: they are left out of the comparison.
TIMING_KEYS = {"seconds", "measured_ms", "samples_ms", "segments", "timings", "ratio"}  # ratio: measured / predicted


def _without_timings(value):
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def _design_record(folder: Path) -> dict:
    record = json.loads((folder / "stages.json").read_text())
    report = record.get("report", {})
    report.pop("chosen", None)  # among models of equal AP, the faster as measured: compared below
    for row in report.get("models", []):
        for key in ("measured_ms", "meets_budget"):
            row.pop(key, None)
    return _without_timings(record)


@pytest.fixture(scope="module")
def design_inputs(tmp_path_factory):
    from tinynas.cli import main

    root = tmp_path_factory.mktemp("design-crash")
    data = synthetic(root / "data", 8, 4, 64)
    data_yaml = root / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({
        "train_images": str(data.train_images), "train_annotations": str(data.train_annotations),
        "val_images": str(data.val_images), "val_annotations": str(data.val_annotations)}))
    model = root / "tiny.yaml"
    model.write_text(yaml.safe_dump(TINY_MODEL))
    table = root / "tiny-ort.csv"
    assert main(["latency", "build", "--space", "k1kx", "--model", str(model), "--size", "64",
                 "--channel-step", "256", "--runtime", "onnxruntime", "--runs", "1", "--warmup", "1",
                 "--no-calibrate", "--out", str(table)]) == 0
    return root, data_yaml, model, table


def _design(data_yaml: Path, model: Path, table: Path, out: Path) -> list[str]:
    # A budget every model meets when measured, so that which model is deployed depends on AP.
    return ["design", str(data_yaml), "--budget", "latency=1000ms", "--latency-db", str(table), "--model", str(model),
            "--teacher-factors", "2", "--candidates", "60", "--epochs", "1", "--size", "64", "--batch-size", "8",
            "--timed-runs", "1", "--out", str(out), "--quiet"]


# The end of the stage a design job is in: its first stages.json record (a resumed design writes
# the record of the stage it resumes first; every stage writes one as it ends).
STAGE_END = "stages.json#1:after"
DESIGN_STAGES = 4
SKIPPED = {".tinynas.lock"}  # a killed job's lock file: taken over by the next job, not a result


def _file_state(path: Path):
    """What must be equal in a file after a rerun: everything but measured times."""
    if path.suffix == ".json":
        return _without_timings(json.loads(path.read_text()))
    if path.suffix == ".pt":
        return torch.load(path, weights_only=True)
    if path.suffix == ".png":
        valid_png(path)
        return "png"  # drawn from the compared data; matplotlib's bytes are not the point
    if path.name == "metrics.csv":
        return metrics(path)
    return path.read_bytes()


def _folder_state(folder: Path, leave_out: tuple[str, ...] = ()) -> dict:
    return {str(p.relative_to(folder)): _file_state(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in SKIPPED and not p.name.startswith(".")
            and not str(p.relative_to(folder)).startswith(leave_out)}


def _same_folder(got: dict, want: dict, where) -> None:
    assert got.keys() == want.keys(), (where, sorted(set(got) ^ set(want)))
    for name in want:
        same_values(got[name], want[name], f"{where}: {name}")


def _restore(state: Path | None, folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    if state is not None:
        shutil.copytree(state, folder)


def test_design_killed_at_every_write_finishes_as_the_uninterrupted_run(jobs, design_inputs):
    """Stage by stage: from the state a kill right after stage k-1's record leaves, every
    durable write of stage k is killed before and after in turn, the design is run again up
    to stage k's own record, and the folder must equal the uninterrupted stage's. The states
    between stages chain into the whole run, which must equal one uninterrupted run. Two
    folders take the points two at a time (records hold absolute paths: each folder keeps its
    own reference states)."""
    pytest.importorskip("onnxruntime")
    root, data_yaml, model, table = design_inputs
    folders = [root / "a", root / "b"]
    command = lambda folder: _design(data_yaml, model, table, folder)  # noqa: E731

    # One uninterrupted run, and the same run killed at each stage's end and resumed.
    assert jobs.run(command(folders[0]), root) == 0, (root / "job.log").read_text()
    whole = _folder_state(folders[0], leave_out=("deploy", "report.md", "stages.json"))
    whole_record = _design_record(folders[0])
    states = {f: [None] for f in folders}
    stage_writes = []
    for stage in range(DESIGN_STAGES):
        for folder in folders:
            _restore(states[folder][stage], folder)
        logs = [root / f"{f.name}-stage{stage}.writes" for f in folders]
        for log in logs:
            log.unlink(missing_ok=True)
        codes = jobs.run_many([{"argv": command(f), "cwd": root, "crash_at": STAGE_END, "log": log,
                                "output": root / f"{f.name}.log"} for f, log in zip(folders, logs)])
        assert codes == [KILLED] * len(folders), (stage, codes, (root / "a.log").read_text())
        for folder in folders:
            saved = root / "states" / folder.name / str(stage + 1)
            shutil.copytree(folder, saved)
            states[folder].append(saved)
        writes = [line.split(" ", 1)[0] for line in logs[0].read_text().splitlines()]
        assert Path(logs[0].read_text().splitlines()[-1].split(" ", 1)[1]).name == "stages.json"
        stage_writes.append(len(writes))
    last = states[folders[0]][DESIGN_STAGES]
    _same_folder(_folder_state(last, leave_out=("deploy", "report.md", "stages.json")), whole, "resumed at stage ends")
    assert _design_record(last) == whole_record
    chose = json.loads((last / "stages.json").read_text())["report"]["chosen"]
    assert (last / "deploy" / "model.onnx").read_bytes() == (last / "measure" / f"{chose['model']}.onnx").read_bytes()
    for figure in ("ap_vs_latency.png", "predicted_vs_measured.png", "training_curves.png"):
        valid_png(last / figure)

    wanted = {f: [_folder_state(states[f][stage + 1]) for stage in range(DESIGN_STAGES)] for f in folders}
    points = [(stage, index, when) for stage, count in enumerate(stage_writes) for index in range(1, count + 1)
              for when in WHEN if (index, when) != (count, "after")]  # that one is the next stage's start
    assert len(points) > 60, points
    for first in range(0, len(points), len(folders)):
        batch = list(zip(folders, points[first:first + len(folders)]))
        for folder, (stage, _, _) in batch:
            _restore(states[folder][stage], folder)
        codes = jobs.run_many([{"argv": command(f), "cwd": root, "crash_at": f"{index}:{when}",
                                "output": root / f"{f.name}.log"} for f, (_, index, when) in batch])
        assert codes == [KILLED] * len(batch), (batch, codes)
        codes = jobs.run_many([{"argv": command(f), "cwd": root, "crash_at": STAGE_END,
                                "output": root / f"{f.name}.log"} for f, _ in batch])
        assert codes == [KILLED] * len(batch), (batch, codes, (root / "a.log").read_text()[-3000:])
        for folder, (stage, index, when) in batch:
            _same_folder(_folder_state(folder), wanted[folder][stage], (stage, index, when))
            no_temporaries(folder)
