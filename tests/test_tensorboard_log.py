"""``train.tensorboard: true``: each metrics.csv row as TensorBoard scalars, a resume purging what
the killed run logged past its checkpoint, and a one-line refusal when tensorboard is missing."""

import csv
import math

import pytest

from tinynas.cli import main
from tinynas.train.recipe import parse_train_recipe
from tinynas.train.tensorboard_log import scalars
from tinynas.train.trainer import train

from train_helpers import synthetic, tiny_recipe, write_recipe

pytest.importorskip("tensorboard")


def _events(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_every_metrics_row_is_logged_once_per_epoch_across_a_resume(tmp_path):
    data = synthetic(tmp_path / "data", images=8, val_images=2, size=64, seed=1)
    recipe = parse_train_recipe(tiny_recipe(data, tmp_path / "run", 64, epochs=3, batch_size=8, tensorboard=True))
    train(recipe, progress=False, stop_after=2)
    # As if the killed run had logged an epoch its checkpoint does not hold: epoch 3 then redone.
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(tmp_path / "run" / "tensorboard")) as stray:
        stray.add_scalar("val/AP", 123.0, 3)
    train(recipe, resume=True, progress=False)
    with open(tmp_path / "run" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    events = _events(tmp_path / "run" / "tensorboard")
    assert [step for step, _ in events["val/AP"]] == [1, 2, 3]  # the stray epoch-3 value was purged
    for key, tag in (("AP", "val/AP"), ("AP50", "val/AP50"), ("loss", "train/loss"), ("lr", "train/lr")):
        logged = dict(events[tag])
        assert len(logged) == 3
        for row in rows:
            assert math.isclose(logged[int(row["epoch"])], float(row[key]), rel_tol=1e-5)  # the CSV keeps 6 digits, (tag, row["epoch"])


def test_a_row_becomes_val_and_train_tags_without_the_empty_and_not_applicable_cells():
    row = {"epoch": 4, "lr": 0.01, "loss": 1.5, "qfl": 0.3, "AP": 0.25, "APl": -1.0, "P": "", "seconds": 2.0}
    assert scalars(row) == {"train/lr": 0.01, "train/loss": 1.5, "train/qfl": 0.3, "val/AP": 0.25,
                            "train/seconds": 2.0}


def test_without_tensorboard_installed_the_run_is_refused_in_one_line_before_any_epoch(tmp_path, monkeypatch,
                                                                                        capsys):
    import tinynas.preflight as preflight

    real = preflight.importlib.util.find_spec
    monkeypatch.setattr(preflight.importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else real(name, *a))
    data = synthetic(tmp_path / "data", images=4, val_images=2, size=64, seed=1)
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(data, tmp_path / "run", 64, epochs=1, batch_size=4))
    assert main(["train", str(path), "train.tensorboard=true", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f'tinynas: error: {path}: dependencies: train.tensorboard needs tensorboard, not installed here: '
                   'pip install -e ".[tensorboard]"']
    assert not (tmp_path / "run" / "last.pt").exists()
