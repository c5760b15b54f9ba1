"""TrainRun reads a run folder back: finished, interrupted, never started."""

import csv
import math

import pytest

from tinynas import UserError
from tinynas.checkpoint import load_checkpoint
from tinynas.cli import main
from tinynas.train.recipe import parse_train_recipe
from tinynas.train.run import TrainRun
from tinynas.train.trainer import train

from train_helpers import synthetic, tiny_recipe


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic(tmp_path_factory.mktemp("run"), images=16, val_images=4, size=64, seed=4)


def _last_evaluated_row(path):
    with open(path, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["AP"]]
    return rows[-1]


def test_a_finished_run(data, tmp_path):
    result = train(parse_train_recipe(tiny_recipe(data, tmp_path / "run", 64, epochs=2, batch_size=8)),
                   progress=False)
    run = TrainRun(tmp_path / "run")
    assert run.started() and run.finished()
    assert run.epochs_done() == 2 and run.planned_epochs() == 2
    assert run.last_checkpoint() == tmp_path / "run" / "last.pt"
    best = run.best_checkpoint()
    assert best == tmp_path / "run" / "best.pt"
    assert load_checkpoint(best).extra["AP"] == pytest.approx(result.best_ap)
    row = _last_evaluated_row(tmp_path / "run" / "metrics.csv")
    assert run.final_metrics() == {"AP": float(row["AP"]), "AP50": float(row["AP50"])}
    assert run.final_metrics()["AP"] == pytest.approx(result.last_metrics["AP"], abs=1e-6)
    assert [int(r["epoch"]) for r in run.metrics()] == [1, 2]
    recipe = run.recipe()
    assert recipe.run_dir == tmp_path / "run" and recipe.train.epochs == 2


def test_an_interrupted_run_is_unfinished_until_resumed(data, tmp_path):
    # eval only at the end: the interrupted run has no AP yet, and so no best.pt
    doc = tiny_recipe(data, tmp_path / "run", 64, epochs=2, batch_size=8, eval_interval=2)
    train(parse_train_recipe(doc), stop_after=1, progress=False)
    run = TrainRun(tmp_path / "run")
    assert run.started() and not run.finished()
    assert run.epochs_done() == 1 and run.planned_epochs() == 2
    assert run.finished(epochs=1)  # what a caller asking for fewer epochs sees
    assert run.best_checkpoint() == run.last_checkpoint() == tmp_path / "run" / "last.pt"
    assert all(math.isnan(v) for v in run.final_metrics().values())

    assert main(["train", "--resume", str(tmp_path / "run"), "--quiet"]) == 0
    assert run.finished() and run.epochs_done() == 2
    assert run.best_checkpoint() == tmp_path / "run" / "best.pt"
    assert not math.isnan(run.final_metrics()["AP"])


def test_a_run_killed_before_its_first_checkpoint(data, tmp_path):
    doc = tiny_recipe(data, tmp_path / "run", 64, epochs=2, batch_size=8)
    train(parse_train_recipe(doc), stop_after=1, progress=False)
    (tmp_path / "run" / "last.pt").unlink()
    run = TrainRun(tmp_path / "run")
    assert run.started() and not run.finished() and run.epochs_done() == 0
    assert run.last_checkpoint() is None


def test_an_empty_folder(tmp_path):
    run = TrainRun(tmp_path)
    assert not run.started() and not run.finished() and run.epochs_done() == 0
    assert run.last_checkpoint() is None and run.best_checkpoint() is None
    assert run.metrics() == []
    assert all(math.isnan(v) for v in run.final_metrics().values())
    with pytest.raises(UserError, match="not a training run folder"):
        run.recipe()


def test_a_broken_recipe_epochs_is_a_user_error(tmp_path):
    (tmp_path / "recipe.yaml").write_text("train: {epochs: many}\n")
    with pytest.raises(UserError, match=r"recipe\.yaml: train\.epochs: expected a whole number"):
        TrainRun(tmp_path).planned_epochs()


def test_the_trainer_s_events_follow_its_phases_and_see_what_the_folder_gets(data, tmp_path):
    from tinynas.train.trainer import EVENTS, Trainer

    seen = []
    record = {event: (lambda event: lambda trainer, *values: seen.append((event, trainer, values)))(event)
              for event in EVENTS}
    doc = tiny_recipe(data, tmp_path / "run", 64, epochs=3, batch_size=8)
    callbacks = {event: [handler] for event, handler in record.items()}
    first = train(parse_train_recipe(doc), stop_after=2, progress=False, callbacks=callbacks)
    assert [event for event, _, _ in seen] == ["train_start", "epoch_end", "epoch_end", "train_end"]
    trainer = seen[0][1]
    assert isinstance(trainer, Trainer) and all(t is trainer for _, t, _ in seen)
    # The epoch_end rows are metrics.csv's rows; train_end hands over what train returns.
    written = [{k: float(v) for k, v in row.items() if v} for row in csv.DictReader(open(tmp_path / "run" / "metrics.csv"))]
    rows = [values[0] for event, _, values in seen if event == "epoch_end"]
    assert [row["epoch"] for row in rows] == [1, 2]
    for got, want in zip(rows, written):
        assert {k: v for k, v in got.items() if k != "seconds"} == pytest.approx(
            {k: v for k, v in want.items() if k != "seconds"}, rel=1e-5)  # the csv keeps 6 digits
    assert seen[-1][2] == (first,) and first.epochs_done == 2
    # A resume starts at the restored epoch: its events begin after it.
    seen.clear()
    train(parse_train_recipe(doc), resume=True, progress=False, callbacks=callbacks)
    assert [event for event, _, _ in seen] == ["train_start", "epoch_end", "train_end"]
    assert seen[0][1].start_epoch == 2 and seen[1][2][0]["epoch"] == 3
