"""Hostile but realistic input: one line and exit 2, owned run folders, nothing silently replaced."""

import errno
import json
import os
import subprocess
import sys
import time

import pytest
import yaml

from conftest import ROOT
from tinynas.cli import main
from tinynas.data.pipeline import AugmentConfig
from tinynas.runfolder import LOCK_NAME, lock_folder
from tinynas.train.recipe import parse_train_recipe

SMALL_SEARCH = ["--space", "k1kx", "--budget", "flops=8G", "--candidates", "300", "--population", "16",
                "--batch-size", "100", "--quiet"]


def one_line_error(capsys, code, *needles):
    """``code`` is 2, stderr is one ``tinynas: error:`` line holding every needle."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("tinynas: error:"), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ------------------------------------------------------------------ 1: nesting
@pytest.mark.parametrize("suffix, text", [
    (".yaml", "blocks: " + "[" * 50000 + "]" * 50000),
    (".json", '{"blocks": ' + "[" * 50000 + "]" * 50000 + "}"),
    (".yaml", "blocks: " + "[" * 40 + "]" * 40),  # under Python's limit, over any real file's depth
])
def test_deeply_nested_architecture_files_are_one_line(tmp_path, capsys, suffix, text):
    path = tmp_path / f"deep{suffix}"
    path.write_text(text)
    one_line_error(capsys, main(["info", str(path)]), str(path), "nested more than")


# ------------------------------------------------------------------ the boundary itself
def test_a_refusal_from_the_os_is_one_line_naming_the_path(monkeypatch, tmp_path, capsys):
    import tinynas.api.arch as commands  # where `convert` writes the file

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.yaml"))

    monkeypatch.setattr(commands, "save_arch", full_disk)
    code = main(["convert", "damoyolo-t", str(tmp_path / "x.yaml")])
    one_line_error(capsys, code, "x.yaml", "No space left on device")


def test_a_bug_keeps_its_traceback_and_asks_to_be_reported(monkeypatch, capsys):
    import tinynas.cli.arch_commands as commands

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(commands, "arch_report", broken)
    assert main(["info", "damoyolo-t"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError" in err and "report it" in err


# ------------------------------------------------------------------ 5 and 14: outputs
def test_search_out_naming_a_file_is_one_line(tmp_path, capsys):
    target = tmp_path / "afile"
    target.write_text("mine")
    one_line_error(capsys, main(["search", *SMALL_SEARCH, "--out", str(target)]), str(target), "is a file")
    assert target.read_text() == "mine"


def test_search_never_replaces_a_folder_it_did_not_make(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "best.yaml").write_text("my architecture\n")
    one_line_error(capsys, main(["search", *SMALL_SEARCH, "--out", str(out)]), str(out), "--force")
    assert tree(out) == ["best.yaml"] and (out / "best.yaml").read_text() == "my architecture\n"
    assert main(["search", *SMALL_SEARCH, "--out", str(out), "--force"]) == 0
    assert (out / "checkpoint.json").is_file() and (out / "best.yaml").read_text() != "my architecture\n"


def test_a_refused_search_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["search", "--space", "k1kx", "--budget", "flops=1k", "--candidates", "10", "--out", str(out),
                 "--quiet"])
    one_line_error(capsys, code, "impossible budget")
    assert not out.exists()


def test_data_synth_never_replaces_images(tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["data", "synth", str(out), "--images", "2", "--val-images", "1", "--size", "64"]) == 0
    capsys.readouterr()
    image = sorted((out / "images" / "train").iterdir())[0]
    before = image.read_bytes()
    code = main(["data", "synth", str(out), "--images", "2", "--val-images", "1", "--size", "64", "--seed", "5"])
    one_line_error(capsys, code, str(out), "--force")
    assert image.read_bytes() == before
    assert main(["data", "synth", str(out), "--images", "2", "--val-images", "1", "--size", "64",
                 "--seed", "5", "--force"]) == 0
    assert image.read_bytes() != before


def test_data_synth_into_a_file_is_one_line(tmp_path, capsys):
    target = tmp_path / "afile"
    target.write_text("x")
    one_line_error(capsys, main(["data", "synth", str(target), "--images", "1"]), str(target), "is a file")


def test_convert_never_replaces_its_output_unless_forced(tmp_path, capsys):
    out = tmp_path / "arch.yaml"
    out.write_text("keep me\n")
    one_line_error(capsys, main(["convert", "damoyolo-t", str(out)]), str(out), "--force")
    assert out.read_text() == "keep me\n"
    assert main(["convert", "damoyolo-t", str(out), "--force"]) == 0
    assert "blocks" in out.read_text()
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    one_line_error(capsys, main(["convert", "damoyolo-t", str(folder)]), str(folder), "is a folder")
    assert list(tmp_path.glob(".*tmp*")) == []


def test_data_convert_never_replaces_its_output(tmp_path, capsys):
    labels = tmp_path / "voc"
    labels.mkdir()
    (labels / "a.xml").write_text("<annotation><filename>a.jpg</filename><size><width>10</width>"
                                  "<height>10</height></size><object><name>cat</name><bndbox><xmin>1</xmin>"
                                  "<ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>")
    out = tmp_path / "ann.json"
    out.write_text("{}")
    one_line_error(capsys, main(["data", "convert", "--from", "voc", str(labels), "--out", str(out)]),
                   str(out), "--force")
    assert out.read_text() == "{}"
    assert main(["data", "convert", "--from", "voc", str(labels), "--out", str(out), "--force"]) == 0
    assert json.loads(out.read_text())["categories"][0]["name"] == "cat"


# ------------------------------------------------------------------ 6: names are not paths
def _escapes(root):
    """Every file under ``root``'s parent that is not under ``root`` (the run's sandbox)."""
    return [p for p in root.parent.rglob("*") if root not in p.parents and p != root]


@pytest.mark.parametrize("name", ["../../x", "/tmp/tinynas-escape", "..", "a/b"])
def test_train_recipe_name_is_one_path_component(tmp_path, monkeypatch, capsys, name):
    sandbox = tmp_path / "work"
    sandbox.mkdir()
    monkeypatch.chdir(sandbox)
    doc = {"name": name, "model": "damoyolo-t", "data": {k: "x" for k in (
        "train_images", "train_annotations", "val_images", "val_annotations")}}
    (sandbox / "r.yaml").write_text(yaml.safe_dump(doc))
    one_line_error(capsys, main(["train", "r.yaml", "--quiet"]), "r.yaml", "name", "plain name")
    assert _escapes(sandbox) == [] and not os.path.exists("/tmp/tinynas-escape")


@pytest.mark.parametrize("name", ["../../x", "/tmp/tinynas-escape"])
def test_search_space_name_is_one_path_component(tmp_path, monkeypatch, capsys, name):
    sandbox = tmp_path / "work"
    sandbox.mkdir()
    monkeypatch.chdir(sandbox)
    doc = yaml.safe_load((ROOT / "search_spaces" / "k1kx.yaml").read_text())
    doc["name"] = name
    (sandbox / "space.yaml").write_text(yaml.safe_dump(doc))
    code = main(["search", "--space", "space.yaml", "--budget", "flops=8G", "--candidates", "50", "--quiet"])
    one_line_error(capsys, code, "space.yaml", "name", "plain name")
    assert _escapes(sandbox) == []


def test_chain_stage_and_chain_names_are_one_path_component(tmp_path, monkeypatch, capsys):
    sandbox = tmp_path / "work"
    sandbox.mkdir()
    monkeypatch.chdir(sandbox)
    (sandbox / "stage.yaml").write_text("model: damoyolo-t\n")
    for doc, field in ((
            {"out": "chain", "stages": [{"name": "../../somewhere", "recipe": "stage.yaml"}]}, "stages[0].name"),
            ({"name": "../up", "stages": [{"name": "s", "recipe": "stage.yaml"}]}, "name")):
        (sandbox / "chain.yaml").write_text(yaml.safe_dump(doc))
        one_line_error(capsys, main(["distill-chain", "chain.yaml", "--quiet"]), "chain.yaml", field)
    assert _escapes(sandbox) == []


# ------------------------------------------------------------------ 7: one writer per run folder
def test_a_second_search_into_a_running_folder_is_refused_and_the_first_finishes_intact(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["search", "--space", "k1kx", "--budget", "flops=8G", "--candidates", "30000", "--population", "32",
            "--batch-size", "500", "--seed", "3", "--quiet", "--out", str(out)]
    first = subprocess.Popen([sys.executable, "-m", "tinynas", *args], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (out / LOCK_NAME).exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert first.poll() is None, "the first search ended before the second could start"
        second = [*args[:-5], "--seed", "4", "--force", "--quiet", "--out", str(out)]
        one_line_error(capsys, main(second), str(out), "in use by pid", str(first.pid))
    finally:
        assert first.wait(timeout=300) == 0, first.stderr.read().decode()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["seed"] == 3
    rows = (out / "candidates.csv").read_text().splitlines()[1:]
    assert len(rows) == summary["counters"]["evaluated"]
    assert not (out / LOCK_NAME).exists()


def test_a_search_run_folder_held_by_a_live_writer_cannot_be_resumed(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["search", *SMALL_SEARCH, "--out", str(out)]) == 0
    capsys.readouterr()
    with lock_folder(out):
        one_line_error(capsys, main(["search", "--resume", str(out), "--quiet"]), str(out), "in use")


def test_a_lock_left_by_a_killed_writer_does_not_block(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.run([sys.executable, "-c", "import os; from tinynas.runfolder import lock_folder; "
                             f"lock_folder({str(out)!r}); os._exit(9)"], cwd=ROOT)
    assert holder.returncode == 9 and (out / LOCK_NAME).exists()
    assert main(["search", *SMALL_SEARCH, "--out", str(out), "--force"]) == 0


# ------------------------------------------------------------------ 11: natural ranges
@pytest.mark.parametrize("section, field, value", [
    ("train", "ema_decay", 1.5), ("train", "momentum", 1.0), ("train", "min_lr_ratio", 2.0),
    ("train", "bn_eps", 0.0), ("eval", "iou", 1.5), ("eval", "conf", 7),
    ("distill", "tau", 0.0), ("augment", "mosaic_prob", 1.5), ("augment", "hsv_value", 3.0),
    ("augment", "translate", 2.0), ("augment", "degrees", 720.0),
])
def test_values_outside_their_natural_range_are_refused(section, field, value):
    doc = {"model": "damoyolo-t", "data": {k: "x" for k in (
        "train_images", "train_annotations", "val_images", "val_annotations")}, section: {field: value}}
    with pytest.raises(Exception) as caught:
        parse_train_recipe(doc, "r.yaml")
    assert caught.type.__name__ == "UserError"
    assert str(caught.value).startswith(f"r.yaml: {section}.{field}: expected a value in ")


def test_values_at_the_edge_of_their_range_are_accepted():
    doc = {"model": "damoyolo-t", "data": {k: "x" for k in (
        "train_images", "train_annotations", "val_images", "val_annotations")},
           "train": {"ema_decay": 0.0, "min_lr_ratio": 1.0}, "augment": {"mosaic_prob": 1.0, "flip_prob": 0}}
    recipe = parse_train_recipe(doc, "r.yaml")
    assert recipe.train.min_lr_ratio == 1.0 and recipe.augment == AugmentConfig(mosaic_prob=1.0, flip_prob=0.0)


# ------------------------------------------------------------------ 12: search recipes
@pytest.mark.parametrize("line, field", [
    ("population: -5", "population"), ("score: foo", "score"), ("seed: x", "seed"), ("jobs: 0", "jobs"),
    ("stage_weights: [1, 2]", "stage_weights"), ("resolution: 0", "resolution"), ("candidates: 2.5", "candidates"),
    ("ladder: latency=abc", "ladder"),
])
def test_search_recipe_field_errors_name_the_recipe(tmp_path, capsys, line, field):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"space: k1kx\nbudgets: {{flops: 8G}}\n{line}\n")
    code = main(["search", str(recipe), "--out", str(tmp_path / "run"), "--quiet"])
    one_line_error(capsys, code, f"{recipe}: {field}:")


def test_a_flag_error_names_the_flag_not_the_recipe(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("space: k1kx\nbudgets: {flops: 8G}\n")
    code = main(["search", str(recipe), "--stage-weights", "1,2", "--out", str(tmp_path / "run"), "--quiet"])
    line = one_line_error(capsys, code, "--stage-weights")
    assert str(recipe) not in line


# ------------------------------------------------------------------ 13: damaged search checkpoints
@pytest.mark.parametrize("edit, field", [
    (lambda d: d.update(counters={}), "counters.candidates"),
    (lambda d: d.update(counters=[1, 2]), "counters"),
    (lambda d: d["counters"].update(evaluated=-3), "counters.evaluated"),
    (lambda d: d.update(csv={"bytes": "many"}), "csv.bytes"),
    (lambda d: d.update(populations=[[{"x": 1}]]), ""),
    (lambda d: d.update(rng_state=[3]), "rng_state"),
    (lambda d: d["config"].pop("population"), ""),
])
def test_resume_on_a_damaged_checkpoint_is_one_line(tmp_path, capsys, edit, field):
    out = tmp_path / "run"
    assert main(["search", *SMALL_SEARCH, "--out", str(out)]) == 0
    capsys.readouterr()
    path = out / "checkpoint.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    one_line_error(capsys, main(["search", "--resume", str(out), "--quiet"]), str(path), field)


# ------------------------------------------------------------------ sizes beyond this machine
def test_an_allocation_the_machine_refuses_is_one_line(monkeypatch, capsys):
    import tinynas.cli.arch_commands as commands

    def too_big(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 81920000000000 bytes")

    monkeypatch.setattr(commands, "arch_report", too_big)
    one_line_error(capsys, main(["info", "damoyolo-t"]), "out of memory")


def test_latency_build_refuses_a_batch_beyond_memory_before_timing(tmp_path, capsys):
    out = tmp_path / "t.csv"
    code = main(["latency", "build", "--space", "k1kx", "--device", "cpu", "--batch-size", "100000", "--out", str(out)])
    one_line_error(capsys, code, "--batch-size", "needs ~", "TiB", "lower --batch-size")
    assert not out.exists()


def test_data_synth_refuses_more_than_the_disk_holds(tmp_path, capsys):
    out = tmp_path / "huge"
    code = main(["data", "synth", str(out), "--images", "100000000", "--size", "8192"])
    one_line_error(capsys, code, str(out), "of disk", "GiB free")
    assert not out.exists()


def test_a_refused_validation_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "validate"
    code = main(["latency", "validate", "--latency-db", "cpu-fp32", "--space", "k1kx", "-n", "1", "--resolution", "100000",
                 "--out", str(out)])
    one_line_error(capsys, code, "outside the table's grid")
    assert not out.exists()


def test_a_training_run_folder_in_use_is_refused_before_any_work(tmp_path, capsys):
    run = tmp_path / "run"
    doc = {"name": "r", "model": "damoyolo-t", "out": str(run), "data": {k: str(tmp_path / "missing") for k in (
        "train_images", "train_annotations", "val_images", "val_annotations")}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(doc))
    with lock_folder(run):
        one_line_error(capsys, main(["train", str(tmp_path / "r.yaml"), "--quiet"]), str(run), "in use by pid")
    assert tree(run) == []
    # Free again: the same command now gets as far as the data (which is missing here).
    one_line_error(capsys, main(["train", str(tmp_path / "r.yaml"), "--quiet"]), "missing")
    assert tree(run) == []


def test_a_lock_won_on_a_file_just_unlinked_is_retried_on_the_real_one(tmp_path, monkeypatch):
    import tinynas.runfolder as runfolder

    real_flock = runfolder.fcntl.flock
    calls = []

    def flock_after_release(fd, flags):
        # The previous holder releases (unlinks) between our open and our flock, once.
        if not calls:
            os.unlink(tmp_path / LOCK_NAME)
        calls.append(fd)
        return real_flock(fd, flags)

    (tmp_path / LOCK_NAME).write_text("{}")
    monkeypatch.setattr(runfolder.fcntl, "flock", flock_after_release)
    lock = lock_folder(tmp_path)
    try:
        assert len(calls) == 2  # the first win was on the unlinked file, so it tried again
        assert os.path.samestat(os.fstat(lock._handle.fileno()), os.stat(tmp_path / LOCK_NAME))
    finally:
        monkeypatch.setattr(runfolder.fcntl, "flock", real_flock)
        lock.release()
