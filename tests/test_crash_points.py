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

from crash_checks import metrics, no_temporaries, same_checkpoint, same_values, valid_png
from crash_harness import KILLED, Jobs
from train_helpers import synthetic, tiny_recipe, write_recipe
from tinynas.crashpoints import WHEN



@pytest.fixture(scope="module")
def jobs():
    runner = Jobs()
    yield runner
    runner.close()


# ---------------------------------------------------------------------------- comparisons
def _same_training(got: Path, want: Path) -> None:
    assert metrics(got / "metrics.csv") == metrics(want / "metrics.csv")
    for name in ("last.pt", "best.pt"):
        assert (got / name).is_file() == (want / name).is_file(), name
        if (want / name).is_file():
            same_checkpoint(got / name, want / name)
    valid_png(got / "results.png")
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
            no_temporaries(folder)
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
    valid_png(want / "pareto.png")
    for b in chosen:
        for when in WHEN:
            status = jobs.run([*SEARCH, "--out", str(got)], tmp_path, crash_at=f"{b.index}:{when}")
            assert status == KILLED, (b, when, status)
            # A run with a checkpoint resumes; one killed before it is started again in its folder.
            again = ["search", "--resume", str(got), "--quiet"] if (got / "checkpoint.json").is_file() \
                else [*SEARCH, "--out", str(got)]
            assert jobs.run(again, tmp_path) == 0, (tmp_path / "job.log").read_text()
            assert _search_state(got) == reference, (b, when)
            valid_png(got / "pareto.png")
            no_temporaries(got)
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
    same_values(rebuilt.state_dict, best.state_dict, "best.pt")

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
    same_values(rebuilt.state_dict, best.state_dict, "best.pt")
    valid_png(run / "results.png")


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
