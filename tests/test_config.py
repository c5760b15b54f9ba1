"""The config layer: one typed reader, one ``key=value`` override mechanism, every recipe kind."""

import inspect
import json
from dataclasses import dataclass, fields
from typing import Literal

import pytest
import yaml

from conftest import ROOT
from tinynas.cli import main
from tinynas.config import (AUTO, Auto, Overrides, Source, apply_overrides, describe, internal, parse_override,
                            read_section, setting, setting_of)
from tinynas.detect.model_recipe import load_model_recipe
from tinynas.errors import UserError
from tinynas.runfolder import run_dir_for
from tinynas.search import search
from tinynas.search.search_recipe import SearchSettings, load_search_recipe, recipe_space
from tinynas.space import load_space
from tinynas.train.recipe import TrainConfig, load_train_recipe

DATA = {"train_images": "i", "train_annotations": "a.json", "val_images": "i", "val_annotations": "a.json"}


# ------------------------------------------------------------------ the reader's types
@dataclass(frozen=True)
class Inner:
    depth: int = setting(2, bounds="[1, inf)")


@dataclass(frozen=True)
class Sample:
    path: str = setting(help="required: no default")
    count: int = setting(3, bounds="[0, inf)")
    share: float = setting(0.5, bounds="[0, 1]")
    lr: float | Auto = setting(AUTO, bounds="[0, inf)")
    decay: float | Auto = setting(AUTO, bounds="[0, 1)")
    flag: bool = True
    mode: Literal["fast", "exact"] = "fast"
    kind: str = setting("relu", choices=("relu", "silu"))
    sizes: tuple[int, int, int] = setting((8, 16, 32), bounds="[1, inf)")
    levels: tuple[int, ...] = setting((2, 4), bounds="[0, inf)")
    limit: int | None = setting(None, bounds="[1, 1024]")
    inner: Inner = setting(factory=Inner)
    origin: str = internal("")


def read(raw, source="s.yaml"):
    return read_section(Sample, {"path": "p", **raw}, source, "sec")


def refused(raw) -> str:
    with pytest.raises(UserError) as caught:
        read(raw)
    text = str(caught.value)
    assert "\n" not in text and text.startswith("s.yaml: sec.")
    return text


def test_the_reader_converts_each_type_by_its_annotation():
    sample = read({"count": 0, "share": 1, "lr": "1e-4", "decay": 0.5, "flag": False, "mode": "exact",
                   "kind": "silu", "sizes": [1, 2, 3], "levels": "0,5,7", "limit": 1024, "inner": {"depth": 9}})
    assert sample.share == 1.0 and isinstance(sample.share, float)
    assert sample.lr == 1e-4  # YAML 1.1 reads 1e-4 as text; a number field takes it
    assert (sample.decay, sample.flag, sample.mode, sample.kind) == (0.5, False, "exact", "silu")
    assert sample.sizes == (1, 2, 3) and sample.levels == (0, 5, 7) and sample.limit == 1024
    assert sample.inner == Inner(9)
    defaults = read({"lr": None, "limit": None})  # null stands for the default
    assert (defaults.lr, defaults.limit, defaults.inner, defaults.count) == (AUTO, None, Inner(2), 3)
    assert read({"path": 2024}).path == "2024"  # YAML reads `path: 2024` as a number


@pytest.mark.parametrize("raw, message", [
    ({"count": True}, "sec.count: expected a non-negative integer, got True"),
    ({"count": 2.5}, "sec.count: expected a non-negative integer, got 2.5"),
    ({"count": -1}, "sec.count: expected a non-negative integer, got -1"),
    ({"share": 1.5}, "sec.share: expected a value in [0, 1], got 1.5"),
    ({"share": "half"}, "sec.share: expected a number in [0, 1], got 'half'"),
    ({"share": float("nan")}, "sec.share: expected a number in [0, 1], got nan"),
    ({"lr": -0.5}, "sec.lr: expected auto or a non-negative number, got -0.5"),
    ({"lr": "fast"}, "sec.lr: expected auto or a non-negative number, got 'fast'"),
    ({"decay": 1.0}, "sec.decay: expected a value in [0, 1), got 1.0"),
    ({"flag": "yes please"}, "sec.flag: expected true or false, got 'yes please'"),
    ({"mode": "slow"}, "sec.mode: expected one of fast, exact, got 'slow'"),
    ({"kind": "gelu"}, "sec.kind: expected one of relu, silu, got 'gelu'"),
    ({"kind": True}, "sec.kind: expected text, got True"),
    ({"sizes": [1, 2]}, "sec.sizes: expected a list of 3 positive integers, got [1, 2]"),
    ({"sizes": [1, 0, 2]}, "sec.sizes: expected a list of 3 positive integers, got [1, 0, 2]"),
    ({"levels": []}, "sec.levels: expected a list of non-negative integers, got []"),
    ({"levels": "1,x"}, "sec.levels: expected a list of non-negative integers, got '1,x'"),
    ({"limit": 2000}, "sec.limit: expected a value in [1, 1024], got 2000"),
    ({"inner": {"depth": 0}}, "sec.inner.depth: expected a positive integer, got 0"),
    ({"inner": [1]}, "sec.inner: expected a mapping"),
    ({"inner": {"width": 1}}, "sec.inner.width: unknown option (known: depth)"),
    ({"origin": "x"}, "sec.origin: unknown option (known: path, count, share, lr, decay, flag, mode, kind, sizes, "
                      "levels, limit, inner)"),
    ({"path": None}, "sec.path: missing"),
])
def test_the_reader_names_the_file_the_field_and_what_it_expected(raw, message):
    assert refused(raw) == f"s.yaml: {message}"


def test_descriptions_come_from_the_types():
    lr = next(f for f in fields(Sample) if f.name == "lr")
    assert describe(float | Auto, setting_of(lr)) == "auto or a non-negative number"
    assert describe(tuple[int, ...]) == "a list of integers"
    assert describe(int | None) == "an integer"
    with pytest.raises(TypeError):
        describe(dict)  # a section may not use a type the reader cannot check


# ------------------------------------------------------------------ overrides
def test_overrides_set_nested_keys_with_yaml_scalar_types_on_a_copy():
    doc = {"train": {"epochs": 300}, "name": "r"}
    out = apply_overrides(doc, ["train.epochs=10", "train.amp=false", "train.lr_per_64=0.02", "name=run 2",
                                "data.cache=ram", "augment.scale=[0.5, 1.5]", "out=", "train.device=cuda:0"])
    assert out == {"train": {"epochs": 10, "amp": False, "lr_per_64": 0.02, "device": "cuda:0"}, "name": "run 2",
                   "data": {"cache": "ram"}, "augment": {"scale": [0.5, 1.5]}, "out": ""}
    assert doc == {"train": {"epochs": 300}, "name": "r"}  # the document itself is left alone
    assert apply_overrides({}, ["seed=1", "seed=2"]) == {"seed": 2}  # a later one wins


@pytest.mark.parametrize("text, message", [
    ("train.epochs", "command line: train.epochs: expected key=value"),
    ("=3", "command line: =3: expected a dotted key such as train.epochs before '='"),
    ("train..epochs=3", "command line: train..epochs=3: expected a dotted key"),
    ("train.epochs=[1, 2", "command line: train.epochs: cannot read value '[1, 2'"),
])
def test_a_malformed_override_is_one_line_naming_it(text, message):
    with pytest.raises(UserError) as caught:
        parse_override(text)
    assert str(caught.value).startswith(message)


def test_an_override_cannot_descend_into_a_value():
    with pytest.raises(UserError, match=r"command line: name.first: name is not a section"):
        apply_overrides({"name": "r"}, ["name.first=x"])


def test_an_override_is_named_as_what_set_it():
    overrides = Overrides.parse(["train.epochs=0"]) + Overrides((parse_override("seed=x", "--seed"),))
    source = Source("r.yaml", overrides)
    assert source.of("train.epochs") == "command line" and source.of("seed") == "--seed"
    assert source.of("train.batch_size") == "r.yaml"
    whole = Source("r.yaml", Overrides.parse(["train={epochs: 0}"]))
    assert whole.of("train.epochs") == "command line"  # set with its section


def write_train_recipe(tmp_path, **sections):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"model": "damoyolo-t", "data": DATA, **sections}))
    return path


def test_a_new_key_from_the_command_line_is_refused_like_one_in_the_file(tmp_path):
    path = write_train_recipe(tmp_path)
    with pytest.raises(UserError) as caught:
        load_train_recipe(path, ["train.epochz=3"])
    known = ", ".join(f.name for f in fields(TrainConfig))
    assert str(caught.value) == f"command line: train.epochz: unknown option (did you mean epochs? known: {known})"
    with pytest.raises(UserError, match=r"^command line: train.epochs: expected a positive integer, got 'ten'$"):
        load_train_recipe(path, ["train.epochs=ten"])
    recipe = load_train_recipe(path, ["train.epochs=3", "train.lr_per_64=1e-2", "augment.scale=0.5,1.25"])
    assert recipe.train.epochs == 3 and recipe.train.lr_per_64 == 0.01 and recipe.augment.scale == (0.5, 1.25)


# ------------------------------------------------------------------ every recipe kind: one line, file and field
def one_line(load, path, field, words):
    with pytest.raises(UserError) as caught:
        load(path)
    text = str(caught.value)
    assert "\n" not in text and text.startswith(f"{path}: {field}: "), text
    assert words in text, text


@pytest.mark.parametrize("edit, field, words", [
    ({"train": {"epochs": "ten"}}, "train.epochs", "expected a positive integer, got 'ten'"),
    ({"train": {"momentum": 1.5}}, "train.momentum", "expected a value in [0, 1), got 1.5"),
    ({"eval": {"io": 0.5}}, "eval.io", "unknown option (did you mean iou? known: conf, iou, max_det, batch_size)"),
    ({"data": {**DATA, "val_images": None}}, "data.val_images", "missing"),
    ({"distill": {"method": "copy"}}, "distill.method", "expected one of cwd, mimic, mgd, self, logit"),
])
def test_train_recipe_errors(tmp_path, edit, field, words):
    one_line(load_train_recipe, write_train_recipe(tmp_path, **edit), field, words)


@pytest.mark.parametrize("edit, field, words", [
    ({"no_aug_epochs": "later"}, "augment.no_aug_epochs", "expected auto or a non-negative integer, got 'later'"),
    ({"flip_prob": 2}, "augment.flip_prob", "expected a value in [0, 1], got 2"),
    ({"mosiac_prob": 1.0}, "augment.mosiac_prob", "unknown option (did you mean mosaic_prob? known: mosaic_prob, mixup_prob"),
    ({"scale": [2.0, 1.0]}, "augment.scale", "expected [low, high] with 0 < low <= high"),
    ({"scale": [0, 1.0]}, "augment.scale", "expected a list of 2 numbers in (0, inf)"),
])
def test_augment_section_errors(tmp_path, edit, field, words):
    one_line(load_train_recipe, write_train_recipe(tmp_path, augment=edit), field, words)


def write_model_recipe(tmp_path, section, key, value):
    doc = yaml.safe_load((ROOT / "recipes" / "models" / "damoyolo-t.yaml").read_text())
    if value is None:
        del doc[section][key]
    else:
        doc[section][key] = value
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("section, key, value, words", [
    ("head", "num_classes", "many", "expected a positive integer, got 'many'"),
    ("neck", "depth", 0, "expected a value in (0, inf), got 0"),
    ("neck", "width", 2, "unknown option (known: out_channels, depth, hidden_ratio, act)"),
    ("backbone", "arch", None, "missing"),
    ("backbone", "act", "sparkle", "expected one of relu, relu6, silu"),
    ("backbone", "out_indices", [2, 4], "expected auto or a list of 3 non-negative integers, got [2, 4]"),
])
def test_model_recipe_errors(tmp_path, section, key, value, words):
    one_line(load_model_recipe, write_model_recipe(tmp_path, section, key, value), f"{section}.{key}", words)


def test_a_model_recipe_reads_out_indices_auto_as_the_wraps_choice(tmp_path):
    shipped = load_model_recipe(ROOT / "recipes" / "models" / "damoyolo-t.yaml")
    assert load_model_recipe(write_model_recipe(tmp_path, "backbone", "out_indices", "auto")) == shipped


def write_space(tmp_path, edit):
    doc = yaml.safe_load((ROOT / "search_spaces" / "k1kx.yaml").read_text())
    edit(doc)
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("edit, field, words", [
    (lambda d: d.update(resolution="big"), "resolution", "expected a positive integer, got 'big'"),
    (lambda d: d["mutation"].update(channel_multipliers=[2, -1]), "mutation.channel_multipliers",
     "expected a list of numbers in (0, inf), got [2, -1]"),
    (lambda d: d["mutation"].update(speed=1), "mutation.speed",
     "unknown option (known: channel_multipliers, depth_steps, nondecreasing_channels)"),
    (lambda d: d.pop("name"), "name", "missing"),
    (lambda d: d.update(colour="red"), "colour", "unknown key (known: name, description, resolution"),
])
def test_space_file_errors(tmp_path, edit, field, words):
    one_line(load_space, write_space(tmp_path, edit), field, words)


def write_search_recipe(tmp_path, text):
    path = tmp_path / "s.yaml"
    path.write_text(f"space: k1kx\nbudgets: {{flops: 8G}}\n{text}\n")
    return path


@pytest.mark.parametrize("text, field, words", [
    ("seed: x", "seed", "expected an integer, got 'x'"),
    ("jobs: 5000", "jobs", "expected a value in [1, 1024], got 5000"),
    ("populaton: 8", "populaton", "unknown key (did you mean population? known: population, candidates"),
    ("stage_weights: 0,0,1,x", "stage_weights", "expected a list of numbers, got '0,0,1,x'"),
    ("budgets: {speed: 1}", "budgets", "unknown budget 'speed'"),
])
def test_search_recipe_errors(tmp_path, text, field, words):
    one_line(load_search_recipe, write_search_recipe(tmp_path, text), field, words)


def test_a_search_recipe_without_a_space_names_the_missing_field(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("population: 8\n")
    one_line(lambda p: recipe_space(load_search_recipe(p)), path, "space", "missing")


# ------------------------------------------------------------------ search on the command line
def test_search_settings_default_to_the_librarys_own():
    defaults = {name: p.default for name, p in inspect.signature(search).parameters.items()}
    for f in fields(SearchSettings):
        assert f.default == defaults[f.name], f.name


def test_key_value_settings_and_their_flags_run_the_same_search(tmp_path, capsys):
    common = ["--space", "k1kx", "--budget", "flops=8G", "--quiet"]
    assert main(["search", "population=8", "candidates=200", "seed=3", "stage_weights=0,0,1,1,16", "batch_size=50",
                 *common, "--out", str(tmp_path / "keys")]) == 0
    assert main(["search", "--population", "8", "--candidates", "200", "--seed", "3", "--stage-weights", "0,0,1,1,16",
                 "--batch-size", "50", *common, "--out", str(tmp_path / "flags")]) == 0
    configs = [json.loads((tmp_path / run / "summary.json").read_text())["config"] for run in ("keys", "flags")]
    assert configs[0] == configs[1]
    assert (configs[0]["population"], configs[0]["candidates"], configs[0]["seed"]) == (8, 200, 3)
    assert configs[0]["weights"] == [0, 0, 1, 1, 16] and configs[0]["batch_size"] == 50


def test_key_value_settings_override_a_search_recipe_and_name_themselves(tmp_path, capsys):
    recipe = write_search_recipe(tmp_path, "population: 16\ncandidates: 100000")
    assert main(["search", str(recipe), "candidates=150", "seed=5", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    config = json.loads((tmp_path / "run" / "summary.json").read_text())["config"]
    assert (config["population"], config["candidates"], config["seed"]) == (16, 150, 5)
    capsys.readouterr()
    assert main(["search", str(recipe), "population=0", "--out", str(tmp_path / "bad"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == "tinynas: error: command line: population: expected a value in [1, 1000000], got 0\n"
    assert not (tmp_path / "bad").exists()


# ------------------------------------------------------------------ run folders
def test_run_folders_are_named_by_one_rule(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert str(run_dir_for("train", "tiny")) == "runs/tiny"
    assert str(run_dir_for("chain", "lms")) == "runs/chains/lms"
    assert str(run_dir_for("train", "tiny", "elsewhere/x")) == "elsewhere/x"
    assert str(run_dir_for("search", "k1kx")) == "runs/k1kx"
    (tmp_path / "runs" / "k1kx").mkdir(parents=True)
    (tmp_path / "runs" / "k1kx-2").mkdir()
    assert str(run_dir_for("search", "k1kx")) == "runs/k1kx-3"  # a search never reuses a folder
    (tmp_path / "runs" / "tiny").mkdir()
    assert str(run_dir_for("train", "tiny")) == "runs/tiny"  # a training run resumes in its own
