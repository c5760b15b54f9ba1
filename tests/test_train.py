"""Training end to end on synthetic data: it learns, it resumes exactly, it refuses bad data."""

import json

import pytest
import torch

from tinynas import UserError
from tinynas.checkpoint import load_checkpoint
from tinynas.cli import main
from tinynas.detect.detector import Detector
from tinynas.train.evaluate import evaluate
from tinynas.train.recipe import load_train_recipe, parse_train_recipe
from tinynas.train.trainer import train
from tinynas.data import CocoDataset, DetectionDataset

from train_helpers import synthetic, tiny_recipe, write_recipe


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return synthetic(tmp_path_factory.mktemp("shapes"), images=64, val_images=16, size=128)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return synthetic(tmp_path_factory.mktemp("small"), images=16, val_images=4, size=64, seed=1)


def test_training_learns_to_detect_shapes(shapes, tmp_path):
    recipe = parse_train_recipe(tiny_recipe(shapes, tmp_path / "run", 128, epochs=20, eval_interval=20))
    torch.manual_seed(0)
    untrained = evaluate(Detector(recipe.model), DetectionDataset(CocoDataset(shapes.val_annotations, shapes.val_images), 128))
    result = train(recipe, progress=False)
    assert untrained["AP50"] < 0.05
    assert result.last_metrics["AP50"] >= 0.5
    assert result.best_ap == pytest.approx(result.last_metrics["AP"])
    for name in ("last.pt", "best.pt", "metrics.csv", "recipe.yaml"):
        assert (tmp_path / "run" / name).is_file()
    ckpt = load_checkpoint(tmp_path / "run" / "best.pt")
    assert ckpt.class_names == list(shapes.classes)
    # The rebuilt detector is the one that was scored: BatchNorm's epsilon (1e-3 in training, not
    # in the state dict) comes back with it, so the same val AP comes out.
    assert ckpt.bn_eps == recipe.train.bn_eps
    val = DetectionDataset(CocoDataset(shapes.val_annotations, shapes.val_images), 128)
    assert evaluate(ckpt.build(), val)["AP"] == pytest.approx(result.best_ap, abs=1e-6)


def _weights(path):
    ckpt = load_checkpoint(path)
    return ckpt.state_dict, ckpt.extra["model"]


def test_resume_equals_uninterrupted(small, tmp_path):
    doc = tiny_recipe(small, tmp_path / "a", 64, epochs=2, batch_size=8)
    train(parse_train_recipe(doc), progress=False)
    doc_b = dict(doc, out=str(tmp_path / "b"))
    stopped = train(parse_train_recipe(doc_b), stop_after=1, progress=False)
    assert stopped.epochs_done == 1
    # resume through the command line, as a user would after a crash
    assert main(["train", "--resume", str(tmp_path / "b"), "--quiet"]) == 0
    ema_a, raw_a = _weights(tmp_path / "a" / "last.pt")
    ema_b, raw_b = _weights(tmp_path / "b" / "last.pt")
    assert ema_a.keys() == ema_b.keys()
    for key in ema_a:
        assert torch.equal(ema_a[key], ema_b[key]), key
        assert torch.equal(raw_a[key], raw_b[key]), key
    rows = (tmp_path / "b" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3  # header + two epochs


def test_cli_train_and_eval(small, tmp_path, capsys):
    doc = tiny_recipe(small, tmp_path / "run", 64, epochs=1, batch_size=8)
    recipe_path = write_recipe(tmp_path / "r.yaml", doc)
    assert main(["train", str(recipe_path), "train.epochs=1", "data.size=64", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "1 epochs done" in out
    assert main(["eval", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "AP50" in out and all(name in out for name in small.classes)
    # a second train into the same folder refuses instead of overwriting the run
    assert main(["train", str(recipe_path), "--quiet"]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_fatal_dataset_problems_stop_training_before_it_starts(small, tmp_path):
    ann = json.loads(small.train_annotations.read_text())
    ann["images"][0]["file_name"] = "missing.png"
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(ann))
    doc = tiny_recipe(small, tmp_path / "run", 64, epochs=1)
    doc["data"]["train_annotations"] = str(broken)
    with pytest.raises(UserError, match="missing.png"):
        train(parse_train_recipe(doc), progress=False)
    assert not (tmp_path / "run").exists()


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(small, tmp_path, capsys):
    doc = tiny_recipe(small, tmp_path / "run", 64, epochs=3, batch_size=8)
    train(parse_train_recipe(doc), stop_after=1, progress=False)
    before = (tmp_path / "run" / "last.pt").read_bytes()
    recipe_file = tmp_path / "run" / "recipe.yaml"
    recipe_file.write_text(recipe_file.read_text().replace("lr_per_64: 0.08", "lr_per_64: 1.0e+30"))
    code = main(["train", "--resume", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "non-finite loss" in err and "last.pt" in err
    assert (tmp_path / "run" / "last.pt").read_bytes() == before


def test_recipe_errors_name_the_field(small, tmp_path):
    doc = tiny_recipe(small, tmp_path / "run", 64, epochs=1)
    doc["train"]["epochz"] = 3
    with pytest.raises(UserError, match=r"train\.epochz: unknown option"):
        parse_train_recipe(doc, "r.yaml")
    doc = tiny_recipe(small, tmp_path / "run", 64, epochs=1)
    doc["head"]["num_classes"] = 5
    with pytest.raises(UserError, match=r"head\.num_classes: the recipe says 5 classes, the dataset has 3"):
        train(parse_train_recipe(doc, "r.yaml"), progress=False, source="r.yaml")
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(small, tmp_path / "run", 64, epochs=1))
    with pytest.raises(UserError, match=r"data\.size: must be a multiple of 32 .*; 96 is the nearest"):
        load_train_recipe(path, ["data.size=100"])


def test_two_process_distributed_training_on_cpu(small, tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    recipe = write_recipe(tmp_path / "r.yaml", tiny_recipe(small, tmp_path / "ddp", 64, epochs=1, batch_size=8))
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "tinynas",
                           "train", str(recipe), "train.device=cpu", "--quiet"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("epochs done") == 1  # only rank 0 reports
    assert load_checkpoint(tmp_path / "ddp" / "last.pt").extra["epoch"] == 1
