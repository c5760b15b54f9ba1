"""`tinynas design --init`: a rung starts from the given checkpoint of its own architecture."""

from __future__ import annotations

import re

import pytest
import torch
import yaml

from tinynas.checkpoint import load_checkpoint, save_checkpoint
from tinynas.cli import main
from tinynas.data.synthetic import make_synthetic_dataset
from tinynas.design import DesignSpec
from tinynas.design import train as train_stage
from tinynas.design.init_match import checkpoint_for, gather_checkpoints
from tinynas.design.report import markdown
from tinynas.design.spec import read_data_section
from tinynas.detect.detector import Detector
from tinynas.detect.model_recipe import load_model_recipe
from tinynas.errors import UserError

MODEL = {
    "name": "tiny",
    "backbone": {"arch": "tinynas-n", "wrap": "res", "out_indices": [2, 4, 5], "focus": True, "act": "relu"},
    "neck": {"depth": 1.0, "hidden_ratio": 1.0, "out_channels": [16, 32, 64], "act": "relu"},
    "head": {"num_classes": 5, "reg_max": 16, "strides": [8, 16, 32]},
}
ARCH = [
    {"class": "ConvKXBNRELU", "in": 3, "out": 8, "s": 2, "k": 3},
    {"class": "SuperResK1KX", "in": 8, "out": 16, "s": 2, "k": 3, "L": 1, "btn": 8},
    {"class": "SuperResK1KX", "in": 16, "out": 24, "s": 2, "k": 3, "L": 1, "btn": 8},
    {"class": "SuperResK1KX", "in": 24, "out": 32, "s": 2, "k": 3, "L": 1, "btn": 16},
    {"class": "SuperResK1KX", "in": 32, "out": 32, "s": 1, "k": 3, "L": 1, "btn": 16},
    {"class": "SuperResK1KX", "in": 32, "out": 48, "s": 2, "k": 3, "L": 1, "btn": 16},
]


@pytest.fixture
def setup(tmp_path):
    data = make_synthetic_dataset(tmp_path / "data", images=8, val_images=4, size=64, seed=0)
    data_yaml = tmp_path / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({
        "train_images": "data/images/train", "train_annotations": "data/annotations/train.json",
        "val_images": "data/images/val", "val_annotations": "data/annotations/val.json"}))
    model = tmp_path / "tiny.yaml"
    model.write_text(yaml.safe_dump(MODEL))
    arch = tmp_path / "arch.yaml"
    arch.write_text(yaml.safe_dump({"blocks": ARCH}))
    return tmp_path, data, data_yaml, model, arch


def _checkpoint(path, model_yaml, arch, num_classes: int, fused: bool = False, seed: int = 1):
    torch.manual_seed(seed)
    recipe = load_model_recipe(str(model_yaml))
    doc = {**recipe.to_dict(), "backbone": {**recipe.to_dict()["backbone"], "arch": arch}}
    from tinynas.detect.model_recipe import parse_model_recipe

    detector = Detector(parse_model_recipe(doc).with_num_classes(num_classes))
    if fused:
        detector.fuse()
    save_checkpoint(path, detector, [f"c{i}" for i in range(num_classes)])
    return path


def test_each_rung_takes_the_checkpoint_of_its_own_architecture_whatever_its_classes(setup):
    root, data, data_yaml, model, arch = setup
    other_arch = [dict(b) for b in ARCH]
    other_arch[3] = {**other_arch[3], "btn": 24}
    other = _checkpoint(root / "other" / "best.pt", model, other_arch, 3)
    mine = _checkpoint(root / "mine" / "best.pt", model, ARCH, 7)
    found = gather_checkpoints([str(root / "other"), str(root / "mine")])
    assert found == [other.resolve(), mine.resolve()]
    recipe = load_model_recipe(str(model))
    doc = {**recipe.to_dict(), "backbone": {**recipe.to_dict()["backbone"], "arch": ARCH}}
    from tinynas.detect.model_recipe import parse_model_recipe

    assert checkpoint_for(parse_model_recipe(doc), found) == mine.resolve()
    assert checkpoint_for(parse_model_recipe(doc), [other.resolve()]) is None


def test_the_train_stage_starts_a_matching_rung_from_the_checkpoint_and_says_which_start_fresh(setup, capsys):
    root, data, data_yaml, model, arch = setup
    given = _checkpoint(root / "given.pt", model, ARCH, 7, seed=3)
    spec = DesignSpec(data=str(data_yaml), budget="latency=5ms", model=str(model), epochs=1, size=64, batch_size=4,
                      init=(str(given),))
    searched = {"rungs": [{"label": "best-5ms", "limit_ms": 5.0, "arch": str(arch)}]}
    logged = []
    result = train_stage.run(spec, read_data_section(data_yaml), len(data.classes), root / "train", searched,
                             progress=False, log=logged.append)
    assert f"train: rung 5ms starts from {given.resolve()}" in logged
    assert result["models"][0]["init"] == str(given.resolve())
    run_recipe = yaml.safe_load((root / "train" / "recipes" / "5ms.yaml").read_text())
    assert run_recipe["train"]["init"] == str(given.resolve())
    # The trainer loaded every tensor but the class convs of the three levels (weight and bias):
    # the checkpoint's 7 classes share no name with the data's.
    loaded = re.search(r"train\.init: (\d+) of (\d+) tensors from " + re.escape(str(given.resolve())),
                       capsys.readouterr().err)
    assert loaded and int(loaded[2]) - int(loaded[1]) == 6

    fresh = _checkpoint(root / "fresh.pt", model, [*ARCH[:5], {**ARCH[5], "out": 64}], 3)
    logged.clear()
    spec = DesignSpec(data=str(data_yaml), budget="latency=5ms", model=str(model), epochs=1, size=64, batch_size=4,
                      init=(str(fresh),))
    result = train_stage.run(spec, read_data_section(data_yaml), len(data.classes), root / "train2", searched,
                             progress=False, log=logged.append)
    assert any("rung 5ms starts from scratch: none of the 1 --init checkpoints" in line for line in logged)
    assert result["models"][0]["init"] == ""
    assert "init" not in yaml.safe_load((root / "train2" / "recipes" / "5ms.yaml").read_text())["train"]


def test_the_report_names_the_weights_each_model_started_from(setup):
    root, data, data_yaml, model, arch = setup
    spec = DesignSpec(data=str(data_yaml), budget="latency=5ms", init=("runs/old",))
    rows = [{"model": m, "teacher": "", "budget_ms": 5.0, "params_M": 1.0, "GFLOPs": 1.0, "predicted_ms": 4.0,
             "measured_ms": 4.0, "ratio": 1.0, "AP": 0.5, "AP50": 0.7, "AP_plain": float("nan"),
             "AP50_plain": float("nan"), "run": f"train/{m}", "plain_run": "", "init": init}
            for m, init in (("10ms", "/w/a/best.pt"), ("5ms", ""))]
    text = markdown(spec, rows, None, {})
    assert "`10ms` from `/w/a/best.pt`; from scratch (no checkpoint of its architecture): `5ms`." in text
    assert "Given weights" not in markdown(DesignSpec(data="d", budget="latency=5ms"), rows, None, {})


@pytest.mark.parametrize("problem, message", [
    ("missing", "--init: {path}: no such file or folder"),
    ("empty", "no best.pt under this folder"),
    ("fused", "a fused (deployment) checkpoint"),
    ("garbage", "not a readable tinynas checkpoint"),
])
def test_bad_init_paths_are_one_line_errors_before_anything_runs(setup, capsys, problem, message):
    root, data, data_yaml, model, arch = setup
    path = root / problem
    if problem == "empty":
        path.mkdir()
    elif problem == "fused":
        _checkpoint(path, model, ARCH, 3, fused=True)
    elif problem == "garbage":
        path.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError) as err:
        gather_checkpoints([str(path)])
    assert message.format(path=path) in str(err.value)
    code = main(["design", str(data_yaml), "--budget", "latency=5ms", "--model", str(model), "--size", "64",
                 "--init", str(path), "--out", str(root / "design"), "--quiet"])
    assert code == 2
    assert message.format(path=path) in capsys.readouterr().err
    assert not (root / "design").exists()


def test_a_fused_checkpoint_is_read_as_fused(setup):
    root, data, data_yaml, model, arch = setup
    assert load_checkpoint(_checkpoint(root / "f.pt", model, ARCH, 3, fused=True)).fused
