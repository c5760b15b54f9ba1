"""Hardening II, the command-line side: pre-checks that run before a folder is claimed, runtimes
checked before work starts, settings whose mistakes are one line naming the file and field."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import yaml

from tinynas.cli import main
from tinynas.data.synthetic import make_synthetic_dataset
from tinynas.design import DesignSpec, design, search_stage
from tinynas.design.spec import check_spec
from tinynas.errors import UserError

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def data_yaml(tmp_path_factory):
    root = tmp_path_factory.mktemp("hardening2")
    make_synthetic_dataset(root / "data", images=4, val_images=2, size=64, seed=0)
    path = root / "data.yaml"
    path.write_text(yaml.safe_dump({
        "train_images": "data/images/train", "train_annotations": "data/annotations/train.json",
        "val_images": "data/images/val", "val_annotations": "data/annotations/val.json"}))
    return path


def _design_cli(capsys, data_yaml: Path, out: Path, *flags: str) -> tuple[int, str]:
    code = main(["design", str(data_yaml), "--out", str(out), "--quiet", "--candidates", "5", "--epochs", "1",
                 *flags])
    return code, capsys.readouterr().err


# ---------------------------------------------------------------------------- 3: design pre-checks
def test_a_design_refused_by_its_pre_checks_leaves_no_settings_behind(data_yaml, tmp_path, capsys):
    out = tmp_path / "design"
    # At 64 px the default table's grid does not hold the detector's ops: refused before design.json.
    code, err = _design_cli(capsys, data_yaml, out, "--budget", "latency=40ms", "--size", "64")
    assert code == 2 and "lies outside the table's grid" in err and err.count("\n") == 1
    assert not (out / "design.json").exists()
    # The corrected rerun reaches the next pre-check (at 320 px no mutation makes the detector 1 ms),
    # not "this folder holds a design with size = 64".
    code, err = _design_cli(capsys, data_yaml, out, "--budget", "latency=1ms", "--size", "320")
    assert code == 2 and "impossible budget" in err, err
    assert not (out / "design.json").exists()


class _Stop(Exception):
    pass


def _stop_when_search_runs(line: str) -> None:
    if line == "search: running":
        raise _Stop


def _started_design(data_yaml: Path, out: Path, spec: DesignSpec) -> None:
    """A folder whose design (``spec``) recorded its settings and a finished search."""
    with pytest.raises(_Stop):
        design(spec, out, progress=False, log=_stop_when_search_runs)
    (out / "search").mkdir()
    (out / "search" / "candidates.csv").write_text("hash\n")
    (out / "stages.json").write_text(json.dumps({"search": {"rungs": []}}))
    (out / "report.md").write_text("old")
    (out / "notes.txt").write_text("the user's own file")


def test_force_starts_a_design_over_with_other_settings(data_yaml, tmp_path):
    out = tmp_path / "design"
    first = DesignSpec(str(data_yaml), "latency=40ms", epochs=1, candidates=5)
    _started_design(data_yaml, out, first)
    second = DesignSpec(str(data_yaml), "latency=40ms", epochs=2, candidates=5)
    with pytest.raises(UserError, match=r"design.json: epochs: this folder holds a design with epochs = 1, "
                                        r"not 2.*or pass --force to start this design over"):
        design(second, out, progress=False, log=_stop_when_search_runs)
    # New settings refused by a pre-check delete nothing, even with --force.
    with pytest.raises(UserError, match="impossible budget"):
        design(DesignSpec(str(data_yaml), "latency=1ms", epochs=2, candidates=5), out, progress=False, force=True)
    assert (out / "stages.json").is_file()
    with pytest.raises(_Stop):
        design(second, out, progress=False, log=_stop_when_search_runs, force=True)
    assert json.loads((out / "design.json").read_text())["epochs"] == 2
    assert not (out / "stages.json").exists() and not (out / "search").exists() and not (out / "report.md").exists()
    assert (out / "notes.txt").read_text() == "the user's own file"  # only the design's own results go


def test_the_same_settings_with_force_resume_instead_of_deleting(data_yaml, tmp_path):
    out = tmp_path / "design"
    spec = DesignSpec(str(data_yaml), "latency=40ms", epochs=1, candidates=5)
    _started_design(data_yaml, out, spec)
    logged = []

    def stop_at_training(line: str) -> None:
        logged.append(line)
        if line == "train: running":
            raise _Stop

    with pytest.raises(_Stop):
        design(spec, out, progress=False, log=stop_at_training, force=True)
    assert logged[0] == "search: finished earlier, skipped"
    assert (out / "search" / "candidates.csv").is_file()


def test_a_budget_under_tinynas_n_s_floor_names_tinynas_p_which_reaches_it(data_yaml, tmp_path, capsys):
    # At 320 px in the shipped onnxruntime table no k1kx backbone gets tinynas-n under ~18.8 ms.
    flags = ("--budget", "latency=17ms", "--runtime", "onnxruntime", "--size", "320")
    code, err = _design_cli(capsys, data_yaml, tmp_path / "n", *flags)
    assert code == 2 and err.count("\n") == 1, err
    assert "impossible budget (latency=17ms)" in err and err.rstrip().endswith(
        "tinynas-n's neck and head set that floor: --model tinynas-p (a shallower neck) reaches lower")
    assert not (tmp_path / "n").exists()
    spec = check_spec(DesignSpec(str(data_yaml), "latency=17ms", runtime="onnxruntime", size=320, model="tinynas-p"))
    search_stage.check(spec, 3)  # the same budget inside tinynas-p: a search can start


# ---------------------------------------------------------------------------- 15, 16: runtimes
def test_the_runtime_is_lower_cased_and_picks_its_shipped_table(data_yaml):
    spec = check_spec(DesignSpec(str(data_yaml), "latency=40ms", runtime=" OnnxRuntime"))
    assert (spec.runtime, spec.latency_db) == ("onnxruntime", "cpu-ort-fp32-tinynas-n")
    assert check_spec(DesignSpec(str(data_yaml), "latency=40ms", runtime="Torch")).latency_db == "cpu-fp32"


def test_a_runtime_without_its_provider_is_refused_before_the_search(data_yaml, tmp_path, capsys):
    import onnxruntime

    if "TensorrtExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has TensorRT")
    out = tmp_path / "design"
    code, err = _design_cli(capsys, data_yaml, out, "--budget", "latency=40ms", "--runtime", "TensorRT")
    assert code == 2 and err.count("\n") == 1, err
    assert "--runtime: tensorrt: the designed models cannot be timed here: this onnxruntime build has no " \
           "TensorrtExecutionProvider" in err
    assert "v100-trt-fp16.json was measured on cuda fp16" in err
    assert not out.exists()  # nothing searched, nothing claimed


# ---------------------------------------------------------------------------- 12, 13, 20: training
@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from train_helpers import synthetic

    return synthetic(tmp_path_factory.mktemp("tiny-data"), images=8, val_images=4, size=64)


def _recipe_file(tiny_data, folder: Path, **train) -> Path:
    from train_helpers import tiny_recipe, write_recipe

    folder.mkdir(parents=True, exist_ok=True)
    return write_recipe(folder / "recipe-in.yaml", tiny_recipe(tiny_data, folder / "run", 64, 1, **train))


def test_unknown_keys_suggest_the_nearest(tiny_data, tmp_path, capsys):
    recipe = _recipe_file(tiny_data, tmp_path)
    for override, guess in (("train.lrr=0.1", "lr_per_64"), ("train.warmup=2", "warmup_epochs"),
                            ("augment.mosiac_prob=0.5", "mosaic_prob")):
        assert main(["train", str(recipe), override, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"unknown option (did you mean {guess}? known: " in err, err
    assert main(["train", str(recipe), "train.xyz=1", "--quiet"]) == 2
    assert "unknown option (known: " in capsys.readouterr().err  # no guess when nothing is close


@pytest.mark.parametrize("device", ["gpu", "mps", "meta", "xla", "cuda:x", ""])
def test_a_device_a_trainer_cannot_use_is_one_line_naming_the_field(tiny_data, tmp_path, capsys, device):
    recipe = _recipe_file(tiny_data, tmp_path)
    assert main(["train", str(recipe), f"train.device={device}", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == f"tinynas: error: command line: train.device: expected auto, cpu, cuda or cuda:N (N a GPU " \
                  f"index), got {device!r}\n"
    assert not (tmp_path / "run").exists()


def test_devices_are_lower_cased_and_a_missing_gpu_is_one_line(tiny_data, tmp_path, capsys):
    import torch

    from tinynas.train.recipe import load_train_recipe

    recipe = _recipe_file(tiny_data, tmp_path)
    assert load_train_recipe(recipe, ["train.device= CPU"]).train.device == "cpu"
    if torch.cuda.is_available():
        assert main(["train", str(recipe), f"train.device=cuda:{torch.cuda.device_count()}", "--quiet"]) == 2
        assert "CUDA device(s)" in capsys.readouterr().err
    else:
        assert main(["train", str(recipe), "train.device=CUDA", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{recipe}: train.device: cuda requested but CUDA is not available" in err


def test_resume_before_the_first_checkpoint_says_how_to_start_again(tiny_data, tmp_path, capsys):
    from tinynas.train.recipe import load_train_recipe
    from tinynas.train.run import TrainRun
    from tinynas.train.run_files import write_recipe

    recipe = load_train_recipe(_recipe_file(tiny_data, tmp_path))
    run = TrainRun(recipe.run_dir)
    recipe.run_dir.mkdir(parents=True)
    write_recipe(run.recipe_path, recipe)  # what a run killed in its first epoch leaves
    assert main(["train", "--resume", str(recipe.run_dir), "--quiet"]) == 2
    err = capsys.readouterr().err
    advice = err.split("start it again with: tinynas ")[1].split()
    assert advice == ["train", str(run.recipe_path), f"out={recipe.run_dir}"], err
    assert main([*advice, "--quiet"]) == 0  # the advice works
    assert run.last_path.is_file()


def test_resume_after_the_model_changed_names_the_file_and_the_difference(tiny_data, tmp_path, capsys):
    from tinynas.train.run import TrainRun

    recipe = _recipe_file(tiny_data, tmp_path)
    assert main(["train", str(recipe), "--quiet", "train.epochs=2", "--stop-after", "1"]) == 0
    capsys.readouterr()
    run = TrainRun(tmp_path / "run")
    original = run.recipe_path.read_text()
    doc = yaml.safe_load(original)
    doc["neck"]["out_channels"] = [16, 32, 64]
    run.recipe_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert main(["train", "--resume", str(run.run_dir), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == f"tinynas: error: {run.last_path}: recipe: written by another model than the run's recipe.yaml " \
                  "describes (neck.out_channels[0]: 32 in the checkpoint, 16 in recipe.yaml): restore that " \
                  "recipe.yaml, or start a new run\n"
    # Another run's last.pt copied in: a block of the backbone differs.
    run.recipe_path.write_text(original)
    other = _recipe_file(tiny_data, tmp_path / "other")
    doc = yaml.safe_load(other.read_text())
    doc["backbone"]["arch"][1]["out"] = 32
    doc["backbone"]["arch"][2]["in"] = 32
    other.write_text(yaml.safe_dump(doc))
    assert main(["train", str(other), "--quiet"]) == 0
    capsys.readouterr()
    run.last_path.write_bytes(TrainRun(tmp_path / "other" / "run").last_path.read_bytes())
    assert main(["train", "--resume", str(run.run_dir), "--quiet"]) == 2
    assert "recipe: written by another model than the run's recipe.yaml describes (backbone.arch[1].out: 32 " \
           "in the checkpoint, 24 in recipe.yaml)" in capsys.readouterr().err


# ---------------------------------------------------------------------------- 17: rehash
def test_rehash_refuses_another_tables_csv_unless_the_new_row_count_is_stated(tmp_path, capsys):
    import shutil

    from conftest import ROOT
    from tinynas.latency.table import load_table

    table = tmp_path / "cpu-fp32.csv"
    shutil.copy(ROOT / "latency_db" / "cpu-fp32.json", tmp_path / "cpu-fp32.json")
    shutil.copy(ROOT / "latency_db" / "cpu-ort-fp32.csv", table)  # another table's rows under this sidecar
    sidecar = (tmp_path / "cpu-fp32.json").read_text()
    assert main(["latency", "rehash", str(table)]) == 2
    err = capsys.readouterr().err
    assert err == f"tinynas: error: {table}: rows: holds 11805 rows, its sidecar cpu-fp32.json says 4199: it may be " \
                  "another table's CSV; if you added or removed rows on purpose, rehash with --rows 11805\n"
    assert (tmp_path / "cpu-fp32.json").read_text() == sidecar  # nothing sealed
    assert main(["latency", "rehash", str(table), "--rows", "4199"]) == 2
    assert "rows: holds 11805 rows, not 4199" in capsys.readouterr().err
    assert main(["latency", "rehash", str(table), "--rows", "11805"]) == 0
    assert "11805 rows checked" in capsys.readouterr().out
    assert len(load_table(table)) == 11805


# ---------------------------------------------------------------------------- 18: disk full, read-only
class _FullDisk:
    """A file whose writes fail as on a full disk (what write() raises: no file name)."""

    def __init__(self, path, mode):
        self._handle = open(path, mode)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _read_only_open(path, mode):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))


@pytest.mark.parametrize("fake_open, reason", [(_FullDisk, "No space left on device"),
                                               (_read_only_open, "Read-only file system")])
def test_a_failed_write_names_the_users_file_not_the_temporary(tmp_path, capsys, monkeypatch, fake_open, reason):
    import shutil

    import tinynas.atomic
    from conftest import ROOT

    table = tmp_path / "cpu-fp32.csv"
    shutil.copy(ROOT / "latency_db" / "cpu-fp32.json", tmp_path / "cpu-fp32.json")
    shutil.copy(ROOT / "latency_db" / "cpu-fp32.csv", table)
    monkeypatch.setattr(tinynas.atomic, "open", fake_open, raising=False)
    assert main(["latency", "rehash", str(table)]) == 2  # rewrites the sidecar
    assert capsys.readouterr().err == f"tinynas: error: {tmp_path / 'cpu-fp32.json'}: {reason}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cpu-fp32.csv", "cpu-fp32.json"]  # no temporary left


def test_a_table_row_that_cannot_be_written_names_the_table(tmp_path, monkeypatch):
    import errno
    import os

    import tinynas.latency.table as table_module

    table = tmp_path / "t.csv"
    table.write_text("header\n")

    def full_disk(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as os.write raises it: no file name

    monkeypatch.setattr(table_module.os, "write", full_disk)
    with pytest.raises(OSError) as caught:
        table_module.append_row(table, "a,b\n")
    assert caught.value.filename == str(table) and caught.value.errno == errno.ENOSPC
    monkeypatch.setattr(table_module.os, "write", lambda fd, data: len(data) // 2)  # a short write
    with pytest.raises(OSError, match="No space left") as caught:
        table_module.append_row(table, "a,b\n")
    assert caught.value.filename == str(table)


# ---------------------------------------------------------------------------- 9: classes by name
def test_eval_scores_classes_by_name_and_refuses_other_names(tiny_data, tmp_path, capsys):
    recipe = _recipe_file(tiny_data, tmp_path)
    assert main(["train", str(recipe), "--quiet", "train.epochs=2"]) == 0
    weights = tmp_path / "run" / "last.pt"
    capsys.readouterr()

    def ap_with(annotations: Path) -> tuple[int, str]:
        code = main(["eval", str(recipe), "--weights", str(weights), f"data.val_annotations={annotations}"])
        return code, capsys.readouterr()

    code, original = ap_with(tiny_data.val_annotations)
    assert code == 0
    doc = json.loads(Path(tiny_data.val_annotations).read_text())
    renumber = {c["id"]: 10 - c["id"] for c in doc["categories"]}  # the id order of the classes reversed
    for c in doc["categories"]:
        c["id"] = renumber[c["id"]]
    for a in doc["annotations"]:
        a["category_id"] = renumber[a["category_id"]]
    renumbered = tmp_path / "renumbered.json"
    renumbered.write_text(json.dumps(doc))
    code, again = ap_with(renumbered)
    assert code == 0
    table = lambda out: out.out.split("\n\n")[0]  # noqa: E731 - the AP row
    assert table(again) == table(original), (original.out, again.out)
    assert sorted(again.out.split("\n\n")[1].splitlines()[2:]) == sorted(original.out.split("\n\n")[1].splitlines()[2:])

    doc["categories"][0]["name"] = "hexagon"
    renamed = tmp_path / "renamed.json"
    renamed.write_text(json.dumps(doc))
    code, refused = ap_with(renamed)
    assert code == 2 and refused.err.count("\n") == 1
    assert f"{weights}: class_names: the checkpoint's 3 classes are not {renamed}'s 3 (" in refused.err
    assert "'hexagon'] only in the dataset" in refused.err


def test_renumbered_classes_are_mapped_by_name():
    import torch

    from tinynas.train.class_order import ReorderedClasses, class_order

    order = class_order(["cat", "dog", "owl"], ["owl", "cat", "dog"], "w.pt", "val.json")
    assert order == [2, 0, 1]
    assert class_order(["cat", "dog"], ["cat", "dog"], "w.pt", "val.json") is None

    class Fixed(torch.nn.Module):
        def forward(self, images):
            return torch.tensor([[[0.1, 0.2, 0.7]]]), torch.zeros(1, 1, 4)

    scores, _ = ReorderedClasses(Fixed(), order)(None)
    assert scores[0, 0].tolist() == pytest.approx([0.7, 0.1, 0.2])  # the owl's score is the dataset's label 0
    with pytest.raises(UserError, match=r"^w.pt: class_names: the checkpoint's 2 classes are not val.json's 2 "
                                        r"\(\['dog'\] only in the checkpoint, \['owl'\] only in the dataset\)$"):
        class_order(["cat", "dog"], ["cat", "owl"], "w.pt", "val.json")


# ---------------------------------------------------------------------------- what the first pass left
def test_eval_checks_its_val_set_as_training_does(tiny_data, tmp_path, capsys):
    recipe = _recipe_file(tiny_data, tmp_path)
    assert main(["train", str(recipe), "--quiet"]) == 0
    weights = tmp_path / "run" / "last.pt"
    doc = json.loads(Path(tiny_data.val_annotations).read_text())
    doc["images"][1]["file_name"] = "gone.png"
    missing = tmp_path / "missing-image.json"
    missing.write_text(json.dumps(doc))
    capsys.readouterr()
    assert main(["eval", str(recipe), "--weights", str(weights), f"data.val_annotations={missing}"]) == 2
    err = capsys.readouterr().err
    gone = Path(tiny_data.val_images) / "gone.png"
    assert err == f"tinynas: error: {gone}: image {doc['images'][1]['id']}: image file missing\n", err

    doc = json.loads(Path(tiny_data.val_annotations).read_text())
    doc["annotations"] = []
    empty = tmp_path / "no-boxes.json"
    empty.write_text(json.dumps(doc))
    assert main(["eval", str(recipe), "--weights", str(weights), f"data.val_annotations={empty}"]) == 2
    err = capsys.readouterr().err
    # The data check's warnings first (each class has no box), as training shows them; then one error line.
    errors = [line for line in err.splitlines() if not line.endswith("[warning]")]
    assert errors == [f"tinynas: error: {empty}: annotations: no annotations: the val set needs at least one box"], err


def test_runtime_names_are_lower_cased_from_the_cli_and_the_api(tmp_path, capsys):
    from tinynas.latency.runtimes import load_runtime

    assert load_runtime(" ONNXRuntime", "cpu", "fp32", 1).name == "onnxruntime"
    assert load_runtime("Torch", "cpu", "fp32", 1) is None
    table = tmp_path / "t.csv"
    assert main(["latency", "build", "--space", "k1kx", "--resolution", "32", "--channel-step", "256", "--runs", "1",
                 "--warmup", "1", "--no-calibrate", "--max-ops", "2", "--runtime", "OnnxRuntime",
                 "--out", str(table)]) == 0
    assert json.loads(table.with_suffix(".json").read_text())["runtime"] == "onnxruntime"


def test_an_unknown_block_class_is_one_line_naming_the_known_ones():
    from tinynas.arch import BlockSpec
    from tinynas.nn.blocks import create_block

    with pytest.raises(UserError) as caught:
        create_block(BlockSpec("SuperResK1KXX", 8, 8, 1, 3))
    assert caught.value.field == "class" and "'SuperResK1KXX'" in caught.value.reason
    assert "SuperResK1KX," in caught.value.reason and "register_block" in caught.value.reason
