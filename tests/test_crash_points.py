"""A crash test at every write boundary (the way databases test power loss).

For each job (train, search, design, latency build): one uninterrupted run records the durable
writes it passes (tinynas/crashpoints.py); then, for each boundary in turn, the job is run with
a SIGKILL exactly before or after that write, run again (resumed where it has a resume point,
started again where it has none) to the end, and its files are compared with the uninterrupted
run's. Killed writers' temporaries must be gone once the rerun holds the folder's lock.

Every job is killed before and after every durable write it passes. The latency build measures
one shard of a small grid (its rows are all the same kind of append). The design is killed
stage by stage: from the state its previous stage's end leaves, each write of the stage is
killed, the design is run again to that stage's end, and the folder is compared with the
uninterrupted stage's; the stage ends chain into one whole run, compared with an uninterrupted
one. Two jobs run at a time (one thread each), in two folders with their own references. Jobs
are tiny (64 px synthetic images, 1-2 epochs, a few hundred candidates).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from crash_harness import KILLED, Jobs
from train_helpers import synthetic, tiny_recipe, write_recipe
from tinynas.crashpoints import WHEN

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def jobs():
    runner = Jobs()
    yield runner
    runner.close()


# ---------------------------------------------------------------------------- comparisons
def _metrics(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def _same_values(a, b, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            _same_values(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same_values(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def _same_checkpoint(got: Path, want: Path) -> None:
    _same_values(torch.load(got, weights_only=True), torch.load(want, weights_only=True), got.name)


def _valid_png(path: Path) -> None:
    from PIL import Image

    assert path.read_bytes().startswith(PNG_SIGNATURE), path
    with Image.open(path) as image:
        image.verify()


def _no_temporaries(folder: Path) -> None:
    left = [p for p in folder.rglob(".*.tmp*")]
    assert left == [], f"temporaries of killed writes left: {left}"


def _same_training(got: Path, want: Path) -> None:
    assert _metrics(got / "metrics.csv") == _metrics(want / "metrics.csv")
    for name in ("last.pt", "best.pt"):
        assert (got / name).is_file() == (want / name).is_file(), name
        if (want / name).is_file():
            _same_checkpoint(got / name, want / name)
    _valid_png(got / "results.png")
    # The final epoch's diagnostics are written before last.pt: a kill among them resumes from the
    # epoch before and writes them all again.
    for name in DIAGNOSTICS:
        assert (got / name).is_file() and (got / name).stat().st_size > 0, name
    assert (got / "recipe.yaml").read_text() == (want / "recipe.yaml").read_text()


# ---------------------------------------------------------------------------- train
DIAGNOSTICS = ("pr_curve.png", "f1_curve.png", "confusion_matrix.png", "val_predictions.jpg")


def test_train_killed_at_every_write_resumes_to_the_uninterrupted_run(jobs, tmp_path):
    data = synthetic(tmp_path / "data", 8, 4, 64)
    # Two folders take the points two at a time; each has its own recipe (the recipe a run saves
    # names its folder) and its own uninterrupted reference, trained in that folder and moved.
    folders = [tmp_path / "a", tmp_path / "b"]
    recipes = [write_recipe(tmp_path / f"{f.name}.yaml", tiny_recipe(data, f, 64, 2, eval_interval=1, batch_size=8))
               for f in folders]
    logs = [tmp_path / f"{f.name}.writes" for f in folders]
    codes = jobs.run_many([{"argv": ["train", str(r), "--quiet"], "cwd": tmp_path, "log": log,
                            "output": tmp_path / f"{f.name}.log"} for f, r, log in zip(folders, recipes, logs)])
    assert codes == [0, 0], (tmp_path / "a.log").read_text()
    wants = [tmp_path / f"{f.name}-full" for f in folders]
    for folder, want in zip(folders, wants):
        folder.rename(want)
    boundaries = [line.split(" ", 1) for line in logs[0].read_text().splitlines()]
    assert {Path(path).name for _, path in boundaries} == {"recipe.yaml", "metrics.csv", "best.pt", "results.png",
                                                           "last.pt", *DIAGNOSTICS}, boundaries
    points = [(int(index), when) for index, _ in boundaries for when in WHEN]
    lanes = list(zip(folders, recipes, wants))
    for first in range(0, len(points), len(lanes)):
        batch = list(zip(lanes, points[first:first + len(lanes)]))
        codes = jobs.run_many([{"argv": ["train", str(recipe), "--quiet"], "cwd": tmp_path,
                                "crash_at": f"{index}:{when}", "output": tmp_path / f"{folder.name}.log"}
                               for (folder, recipe, _), (index, when) in batch])
        assert codes == [KILLED] * len(batch), (batch, codes)
        again = [["train", "--resume", str(folder)] if (folder / "last.pt").is_file() else ["train", str(recipe)]
                 for (folder, recipe, _), _ in batch]
        codes = jobs.run_many([{"argv": [*argv, "--quiet"], "cwd": tmp_path, "output": tmp_path / f"{folder.name}.log"}
                               for ((folder, _, _), _), argv in zip(batch, again)])
        assert codes == [0] * len(batch), (batch, codes, (tmp_path / "a.log").read_text()[-3000:])
        for (folder, _, want), point in batch:
            _same_training(folder, want)
            _no_temporaries(folder)
            shutil.rmtree(folder)


# ---------------------------------------------------------------------------- search
SEARCH = ["search", "--space", "k1kx", "--budget", "layers=20", "--candidates", "300", "--population", "16",
          "--batch-size", "50", "--checkpoint-every", "100", "--seed", "3", "--quiet"]


def _search_state(folder: Path) -> dict:
    checkpoint = json.loads((folder / "checkpoint.json").read_text())
    summary = json.loads((folder / "summary.json").read_text())
    return {
        "candidates": (folder / "candidates.csv").read_bytes(),
        "checkpoint": {k: v for k, v in checkpoint.items() if k != "segments"},
        "best": [(folder / f).read_text() for f in ("best.yaml", "best.txt")],
        "summary": {k: v for k, v in summary.items() if k != "timings"},
    }


def test_search_killed_at_every_write_finishes_as_the_uninterrupted_run(jobs, tmp_path):
    got, want = tmp_path / "run", tmp_path / "full"
    boundaries = jobs.boundaries([*SEARCH, "--out", str(got)], tmp_path, tmp_path / "full.writes")
    got.rename(want)
    chosen = boundaries
    assert {Path(b.path).name for b in chosen} >= {"checkpoint.json", "candidates.csv", "best.yaml", "summary.json"}
    reference = _search_state(want)
    _valid_png(want / "pareto.png")
    for b in chosen:
        for when in WHEN:
            status = jobs.run([*SEARCH, "--out", str(got)], tmp_path, crash_at=f"{b.index}:{when}")
            assert status == KILLED, (b, when, status)
            # A run with a checkpoint resumes; one killed before it is started again in its folder.
            again = ["search", "--resume", str(got), "--quiet"] if (got / "checkpoint.json").is_file() \
                else [*SEARCH, "--out", str(got)]
            assert jobs.run(again, tmp_path) == 0, (tmp_path / "job.log").read_text()
            assert _search_state(got) == reference, (b, when)
            _valid_png(got / "pareto.png")
            _no_temporaries(got)
            shutil.rmtree(got)


# ---------------------------------------------------------------------------- latency build
def _table_build(out: Path) -> list[str]:
    # One shard of the grid: every row is the same kind of append, and a shard's sidecar says
    # which part of the grid it holds, so a few rows exercise every kind of write.
    return ["latency", "build", "--space", "k1kx", "--resolution", "32", "--channel-step", "256",
            "--runs", "1", "--warmup", "1", "--no-calibrate", "--shard", "1/8", "--out", str(out)]


def _ops(path: Path) -> list[tuple]:
    """The rows' operation columns: what was measured, not how long it took."""
    with open(path, newline="") as handle:
        return [tuple(v for k, v in row.items() if k not in ("latency_ms", "spread_ms", "runs"))
                for row in csv.DictReader(handle)]


def test_latency_build_killed_at_every_write_resumes_keeping_its_rows(jobs, tmp_path):
    got, want = tmp_path / "run.csv", tmp_path / "full.csv"
    boundaries = jobs.boundaries(_table_build(got), tmp_path, tmp_path / "full.writes")
    got.rename(want)
    got.with_suffix(".json").rename(want.with_suffix(".json"))
    chosen = boundaries
    assert {Path(b.path).suffix for b in chosen} == {".csv", ".json"}
    reference = _ops(want)
    assert len(reference) > 10
    meta_keys = set(json.loads(want.with_suffix(".json").read_text()))
    for b in chosen:
        for when in WHEN:
            status = jobs.run(_table_build(got), tmp_path, crash_at=f"{b.index}:{when}")
            assert status == KILLED, (b, when, status)
            kept = got.read_bytes().splitlines(keepends=True) if got.is_file() else []
            assert jobs.run(_table_build(got), tmp_path) == 0, (tmp_path / "job.log").read_text()
            assert _ops(got) == reference, (b, when)
            # Rows measured before the kill are kept as they were, not measured again.
            assert got.read_bytes().splitlines(keepends=True)[:len(kept)] == kept
            assert set(json.loads(got.with_suffix(".json").read_text())) == meta_keys
            assert [p for p in tmp_path.glob(f".{got.stem}.*tmp*")] == []
            got.unlink()
            got.with_suffix(".json").unlink()


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
        _valid_png(path)
        return "png"  # drawn from the compared data; matplotlib's bytes are not the point
    if path.name == "metrics.csv":
        return _metrics(path)
    return path.read_bytes()


def _folder_state(folder: Path, leave_out: tuple[str, ...] = ()) -> dict:
    return {str(p.relative_to(folder)): _file_state(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in SKIPPED and not p.name.startswith(".")
            and not str(p.relative_to(folder)).startswith(leave_out)}


def _same_folder(got: dict, want: dict, where) -> None:
    assert got.keys() == want.keys(), (where, sorted(set(got) ^ set(want)))
    for name in want:
        _same_values(got[name], want[name], f"{where}: {name}")


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
        _valid_png(last / figure)

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
            _no_temporaries(folder)


# ---------------------------------------------------------------------------- what the crash tests rely on
def test_a_resume_rebuilds_a_lost_best_pt_of_its_own_epoch_and_refuses_an_older_one(tmp_path):
    from tinynas.cli import main
    from tinynas.checkpoint import load_checkpoint

    data = synthetic(tmp_path / "data", 8, 4, 64)
    run = tmp_path / "run"
    recipe = write_recipe(tmp_path / "run.yaml", tiny_recipe(data, run, 64, 1, eval_interval=1, batch_size=8))
    assert main(["train", str(recipe), "--quiet"]) == 0
    best = load_checkpoint(run / "best.pt")
    (run / "best.pt").unlink()  # as a kill between last.pt and best.pt left it, when last.pt came first
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    rebuilt = load_checkpoint(run / "best.pt")
    assert rebuilt.extra == best.extra
    _same_values(rebuilt.state_dict, best.state_dict, "best.pt")

    # A best epoch before last.pt's cannot be rebuilt from last.pt: one line, not a silent skip.
    last = torch.load(run / "last.pt", weights_only=True)
    (run / "best.pt").unlink()
    from tinynas.checkpoint import load_detector, save_checkpoint
    detector, _ = load_detector(run / "last.pt")
    save_checkpoint(run / "last.pt", detector, last["class_names"], extra={**last["extra"], "best_epoch": 0})
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    assert not (run / "best.pt").exists()


def test_a_chain_skipping_a_finished_stage_rebuilds_its_lost_best_pt_first(tmp_path):
    from tinynas.checkpoint import load_checkpoint
    from tinynas.cli import main

    data = synthetic(tmp_path / "data", 8, 4, 64)
    stage = tiny_recipe(data, tmp_path / "unused", 64, 1, eval_interval=1, batch_size=8)
    stage.pop("out")
    write_recipe(tmp_path / "stage.yaml", stage)
    chain = tmp_path / "chain.yaml"
    chain.write_text(yaml.safe_dump({"name": "one", "out": str(tmp_path / "chain"),
                                     "stages": [{"name": "only", "recipe": "stage.yaml"}]}))
    assert main(["distill-chain", str(chain), "--quiet"]) == 0
    run = tmp_path / "chain" / "only"
    best = load_checkpoint(run / "best.pt")
    # What a kill between last.pt and best.pt left, when an older tinynas wrote last.pt first.
    (run / "best.pt").unlink()
    (run / "results.png").unlink()
    assert main(["distill-chain", str(chain), "--quiet"]) == 0
    rebuilt = load_checkpoint(run / "best.pt")
    assert rebuilt.extra == best.extra
    _same_values(rebuilt.state_dict, best.state_dict, "best.pt")
    _valid_png(run / "results.png")


def test_a_search_log_without_a_checkpoint_is_started_again(tmp_path):
    from tinynas.cli import main

    want, got = tmp_path / "full", tmp_path / "run"
    assert main([*SEARCH, "--out", str(want)]) == 0
    got.mkdir()
    # What a search killed between its log and its first checkpoint left before the settings came first.
    (got / "candidates.csv").write_text((want / "candidates.csv").read_text().splitlines()[0] + "\n")
    assert main(["search", "--resume", str(got), "--quiet"]) == 2  # no settings stored: it says to start again
    assert main([*SEARCH, "--out", str(got)]) == 0
    assert (got / "candidates.csv").read_bytes() == (want / "candidates.csv").read_bytes()


def test_the_lock_sweeps_only_dead_writers_temporaries(tmp_path):
    from tinynas.runfolder import lock_folder

    dead = _dead_pid()
    (tmp_path / "deploy").mkdir()
    stale = [tmp_path / f".last.pt.tmp{dead}", tmp_path / "deploy" / f".model.onnx.tmp{dead}"]
    live = tmp_path / f".best.pt.tmp{os.getpid()}"
    for path in [*stale, live]:
        path.write_bytes(b"partial")
    lock_folder(tmp_path).release()
    assert [p for p in stale if p.exists()] == []
    assert live.exists()


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_design_stage_whose_files_are_gone_is_not_trusted(tmp_path):
    from tinynas.design.outputs import missing_output

    run = tmp_path / "train" / "small"
    run.mkdir(parents=True)
    for name in ("recipe.yaml", "last.pt"):
        (run / name).write_text("x")
    (run / "metrics.csv").write_text("epoch,AP\n1,0.5\n")
    record = {"models": [{"name": "small", "run": str(run), "plain_run": ""}]}
    assert missing_output(tmp_path, "train", record) == run / "best.pt"  # evaluated, so it had best weights
    (run / "best.pt").write_text("x")
    assert missing_output(tmp_path, "train", record) is None
    assert missing_output(tmp_path, "search", {"rungs": [{"arch": str(tmp_path / "best.yaml")}]}) == tmp_path / "best.yaml"
    assert missing_output(tmp_path, "measure", {}) == tmp_path / "stages.json"
