"""One name per concept: the new spellings everywhere, the old ones accepted with a note, and
``tinynas cfg`` saying where each setting came from."""

from __future__ import annotations

import argparse
import json

import pytest

from tinynas.cli import build_parser, main
from tinynas.config import Overrides
from tinynas.design.spec import SPEC_NAME, DesignSpec, spec_change, store_spec
from tinynas.errors import UserError
from tinynas.search import search
from tinynas.search.search_recipe import load_search_recipe

# The spellings one name replaced; none may be offered (in --help) by any command.
RETIRED = {"--db": "--latency-db", "--batch": "--batch-size", "--model-size": "--size"}
# --weights is a checkpoint wherever it is offered; stage weights are --stage-weights.
CHECKPOINT_COMMANDS = {"predict", "export", "eval", "quant sensitivity"}


def _commands(parser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _commands(child, (*prefix, name))
    if prefix:
        yield " ".join(prefix), parser


def _offered(parser):
    return {s for a in parser._actions if a.help != argparse.SUPPRESS for s in a.option_strings}


def test_no_command_offers_a_retired_spelling_and_weights_always_means_a_checkpoint():
    for name, parser in _commands(build_parser()):
        offered = _offered(parser)
        assert not offered & set(RETIRED), (name, offered & set(RETIRED))
        if "--weights" in offered:
            assert name in CHECKPOINT_COMMANDS, name
            assert "checkpoint" in next(a.help for a in parser._actions if "--weights" in a.option_strings)


@pytest.mark.parametrize("old, new", [
    (["score", "damoyolo-t", "--weights", "1,1,1,1,2"], ["score", "damoyolo-t", "--stage-weights", "1,1,1,1,2"]),
    (["info", "damoyolo-t", "--weights", "0,0,1,1,3"], ["info", "damoyolo-t", "--stage-weights", "0,0,1,1,3"]),
    (["latency", "predict", "damoyolo-t", "--db", "v100-trt-fp16-damoyolo"],
     ["latency", "predict", "damoyolo-t", "--latency-db", "v100-trt-fp16-damoyolo"]),
])
def test_an_old_flag_gives_the_new_flags_result_and_a_one_line_note(capsys, old, new):
    assert main(new) == 0
    want, quiet = capsys.readouterr()
    assert "note" not in quiet
    assert main(old) == 0
    got, err = capsys.readouterr()
    assert got == want
    spelling = next(a for a in old if a.startswith("--"))
    assert err.strip().splitlines() == [f"tinynas: note: command line: {spelling} is now "
                                        f"{new[old.index(spelling)]} (the old spelling is accepted until the next "
                                        "release)"]


def test_an_old_flag_is_checked_as_the_new_one(capsys):
    assert main(["score", "damoyolo-t", "--method", "entropy", "--batch", "0"]) == 2
    err = capsys.readouterr().err
    assert "--batch is now --batch-size" in err
    assert "--batch-size: batch_size: expected a positive integer, got 0" in err


def test_an_old_recipe_key_is_read_as_the_new_one_and_both_is_refused(tmp_path, capsys):
    old = tmp_path / "old.yaml"
    old.write_text("space: k1kx\nweights: [0, 0, 1, 1, 9]\n")
    assert load_search_recipe(old).stage_weights == (0.0, 0.0, 1.0, 1.0, 9.0)
    assert "weights is now stage_weights" in capsys.readouterr().err
    # Given as key=value, the note and any error name the command line, not the file.
    recipe = load_search_recipe(None, Overrides.parse(["space=k1kx", "weights=0,0,1,1,9"]))
    assert recipe.stage_weights == (0.0, 0.0, 1.0, 1.0, 9.0) and recipe.source.of("stage_weights") == "command line"
    both = tmp_path / "both.yaml"
    both.write_text("space: k1kx\nweights: [0, 0, 1, 1, 9]\nstage_weights: [0, 0, 1, 1, 9]\n")
    with pytest.raises(UserError, match="weights: weights is the old spelling of stage_weights; give only"):
        load_search_recipe(both)


def test_a_train_recipe_with_the_old_eval_keys_reads_as_the_new_ones(tmp_path, capsys):
    from tinynas.train.recipe import load_train_recipe

    recipe = tmp_path / "t.yaml"
    recipe.write_text("name: t\nmodel: tinynas-n\ndata: {train_images: a, train_annotations: a.json, val_images: a, "
                      "val_annotations: a.json, size: 320}\neval: {conf_threshold: 0.01, max_detections: 50}\n")
    read = load_train_recipe(recipe, ["eval.iou_threshold=0.6"])
    assert (read.eval.conf, read.eval.iou, read.eval.max_det) == (0.01, 0.6, 50)
    notes = capsys.readouterr().err.strip().splitlines()
    assert f"tinynas: note: {recipe}: eval.conf_threshold is now eval.conf (the old spelling is accepted until the " \
           "next release)" in notes and any("command line: eval.iou_threshold is now eval.iou" in n for n in notes)
    assert "conf_threshold" not in str(read.to_dict()["eval"])  # a run folder's recipe.yaml says it the new way


def test_search_takes_its_old_keyword_and_refuses_both_and_unknown_ones(capsys):
    settings = dict(budgets=["layers=20"], population=8, candidates=60, batch_size=20, seed=2)
    new = search("k1kx", stage_weights=[0, 0, 1, 1, 9], **settings)
    old = search("k1kx", weights=[0, 0, 1, 1, 9], **settings)
    assert "search(): weights= is now stage_weights=" in capsys.readouterr().err
    assert old.best.arch == new.best.arch and old.best.score == new.best.score
    with pytest.raises(TypeError, match="both weights="):
        search("k1kx", weights=[0, 0, 1, 1, 9], stage_weights=[0, 0, 1, 1, 8], **settings)
    with pytest.raises(TypeError, match="unexpected keyword argument 'weigths'"):
        search("k1kx", weigths=[0, 0, 1, 1, 9], **settings)


def test_a_design_started_before_the_rename_resumes(tmp_path, capsys):
    spec = DesignSpec("data.yaml", "latency=9ms", latency_db="cpu-fp32")
    assert DesignSpec("data.yaml", "latency=9ms", db="cpu-fp32") == spec
    assert "DesignSpec(): db= is now latency_db=" in capsys.readouterr().err
    store_spec(tmp_path, spec)
    stored = json.loads((tmp_path / SPEC_NAME).read_text())
    stored["db"] = stored.pop("latency_db")  # design.json as an older tinynas wrote it
    (tmp_path / SPEC_NAME).write_text(json.dumps(stored))
    assert spec_change(tmp_path, spec, started=True) == "same"
    with pytest.raises(UserError, match="latency_db"):
        spec_change(tmp_path, DesignSpec("data.yaml", "latency=9ms", latency_db="cpu-ort-fp32"), started=True)


# ---------------------------------------------------------------------------- tinynas cfg
def _cfg_rows(capsys, *argv) -> dict[str, tuple[str, str]]:
    assert main(["cfg", *map(str, argv)]) == 0
    lines = capsys.readouterr().out.splitlines()[2:]
    rows = {}
    for line in lines:
        key, rest = line.split(None, 1)
        value, origin = rest.rsplit("  ", 1)
        rows[key] = (value.strip(), origin.strip())
    return rows


def test_cfg_search_names_the_file_the_key_value_the_flag_and_the_default(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("space: k1kx\npopulation: 32\ncandidates: 900\nbudgets: {layers: 20}\n")
    rows = _cfg_rows(capsys, "search", recipe, "seed=4", "--candidates", "700", "--budget", "flops=3G")
    assert rows["population"] == ("32", str(recipe))
    assert rows["seed"] == ("4", "command line (seed=)")
    assert rows["candidates"] == ("700", "--candidates")  # the flag wins over the file
    assert rows["batch_size"] == ("512", "default")
    assert rows["budgets"] == ("flops=3G,layers=20", f"{recipe} and --budget")
    assert not (tmp_path / "runs").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["r.yaml"]


def test_cfg_train_names_the_model_recipe_and_flag_commands_their_flags(tmp_path, capsys):
    recipe = tmp_path / "t.yaml"
    recipe.write_text(f"name: t\nmodel: tinynas-n\ndata: {{train_images: {tmp_path}, train_annotations: a.json, "
                      f"val_images: {tmp_path}, val_annotations: a.json, size: 320}}\ntrain: {{epochs: 7}}\n")
    rows = _cfg_rows(capsys, "train", recipe, "train.batch_size=4")
    assert rows["train.epochs"] == ("7", str(recipe))
    assert rows["train.batch_size"] == ("4", "command line (train.batch_size=)")
    assert rows["neck.type"][1] == "model recipe tinynas-n"
    assert rows["train.optimizer"][1] == "default"
    rows = _cfg_rows(capsys, "latency", "calibrate", "--latency-db", "cpu-fp32", "-n", "5", "seed=2")
    assert rows["n"] == ("5", "command line (-n)") and rows["rounds"] == ("3", "default")
    assert rows["seed"] == ("2", "command line (seed=)") and rows["store"] == ("True", "default")
    assert "channel_step" not in rows and "--channel-step" not in rows  # latency build's, not calibrate's
    rows = _cfg_rows(capsys, "design", "d.yaml", "--budget", "latency=9ms", "--db", "cpu-fp32", "seed=3")
    assert rows["latency_db"] == ("cpu-fp32", "command line (--latency-db)")
    assert rows["seed"] == ("3", "command line (seed=)")
    assert rows["epochs"] == ("100", "default") and rows["--out"] == ("runs/design", "default")
    assert "--epochs" not in rows  # a setting is listed once, by its key
    assert rows["data"] == ("d.yaml", "command line (DATA)")
    rows = _cfg_rows(capsys, "export", "--weights", "x.pt", "nms=true", "--conf", "0.3")
    assert rows["nms"] == ("True", "command line (nms=)") and rows["conf"] == ("0.3", "command line (--conf)")
    assert rows["iou"] == ("0.7", "default")


def test_cfg_of_an_unknown_command_or_argument_is_one_line(capsys):
    assert main(["cfg", "serach"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown command 'serach'" in err[0] and "search" in err[0]
    assert main(["cfg", "design", "d.yaml", "--budget", "latency=9ms", "--bogus"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--bogus" in err[0]
