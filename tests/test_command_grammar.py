"""One grammar for every command: ``tinynas COMMAND [FILE] key=value ... --flag value ...``,
where each generated flag and its ``key=value`` give the same settings."""

from __future__ import annotations

import argparse
import json
import typing
from dataclasses import MISSING, fields

import pytest

from tinynas import api
from tinynas.bounds import in_bounds
from tinynas.cli import build_parser, main
from tinynas.cli.cfg_commands import settings_of
from tinynas.cli.settings_flags import given_settings, read_settings
from tinynas.config import COMMAND_LINE, Overrides, setting_of
from tinynas.distill.chain import load_chain
from tinynas.errors import UserError

# Commands with nothing to set: their arguments are paths (``latency list``) or another command.
NO_SETTINGS = {"latency list", "cfg"}


def _leaves(parser, prefix=()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for action in subs:
        for name, child in action.choices.items():
            yield from _leaves(child, (*prefix, name))
    if prefix and not subs:
        yield prefix, parser


LEAVES = dict(_leaves(build_parser()))


def test_every_command_with_settings_takes_key_value():
    for words, parser in LEAVES.items():
        takes = any(a.dest == "overrides" for a in parser._actions)
        assert takes or " ".join(words) in NO_SETTINGS, " ".join(words)


def _sample(hint, choices=(), default=None, bounds=None) -> str | None:
    """A command-line text for a value of type ``hint`` other than ``default`` where the type
    allows one, or None for a boolean (its flag takes no value)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if hint is bool or args == [bool]:
        return None
    if len(args) < len(typing.get_args(hint)):  # X | None
        return _sample(args[0] if len(args) == 1 else typing.Union[tuple(args)], choices, default, bounds)
    if choices or typing.get_origin(hint) is typing.Literal:
        options = [str(c) for c in (choices or args)]
        return next((c for c in options if c != str(default)), options[0])
    if typing.get_origin(hint) is tuple:
        return "0.2,0.3" if float in args else "2,3" if int in args else "a"
    if hint in (int, float):
        numbers = (3, 2) if hint is int else (0.375, 1.5, 3.0)
        return str(next(n for n in numbers if n != default and (not bounds or in_bounds(n, bounds))))
    return "some-text"


def _generated_commands():
    for words, parser in LEAVES.items():
        parsed = argparse.Namespace(**{f"{words[0]}_command": words[-1]} if len(words) > 1 else {})
        for name in ("latency_command", "data_command", "model_command"):
            parsed.__dict__.setdefault(name, None)
        found = settings_of(words[0], parsed)
        if found:
            yield pytest.param(words, parser, *found, id=" ".join(words))


@pytest.mark.parametrize("words, parser, cls, flags", list(_generated_commands()))
def test_each_generated_flag_and_its_key_value_give_the_same_settings(words, parser, cls, flags):
    hints = typing.get_type_hints(cls)
    described = {f.name: f for f in fields(cls)}
    positionals = [a for a in parser._actions if not a.option_strings and a.dest != "overrides"]
    base = ["P"] * len(positionals)
    required = [f"{f.name}={_sample(hints[f.name]) or 'true'}" for f in fields(cls)
                if f.default is MISSING and f.default_factory is MISSING]
    checked = 0
    for flag in flags:
        field = described[flag.key]
        spec = setting_of(field)
        sample = _sample(hints[flag.key], spec.choices, field.default, spec.bounds)
        by_flag = [flag.option] if sample is None else [flag.option, str(sample)]
        by_key = [f"{flag.key}={'false' if flag.negate else 'true'}" if sample is None else f"{flag.key}={sample}"]
        others = [r for r in required if not r.startswith(flag.key + "=")]
        a = read_settings(cls, given_settings(parser.parse_args(base + others + by_flag), flags), flags)
        b = read_settings(cls, given_settings(parser.parse_args(base + others + by_key), flags), flags)
        default = read_settings(cls, given_settings(parser.parse_args(base + others), flags), flags) \
            if not any(r.startswith(flag.key + "=") for r in required) else None
        assert a == b, (flag.option, a, b)
        only_choice = sample is not None and str(field.default) == sample
        assert default is None or only_choice or getattr(a, flag.key) != getattr(default, flag.key), flag.option
        checked += 1
    assert checked == len(flags)


def test_a_bad_key_value_is_one_line_naming_the_key(tmp_path, capsys):
    for argv, named in ([["data", "synth", str(tmp_path / "s"), "objects=0"], "objects"],
                        [["latency", "merge", "a.csv", "out=m.csv", "max_nominal_ratio=0.5"], "max_nominal_ratio"],
                        [["model", "info", "tinynas-n", "sise=320"], "sise"],
                        [["data", "convert", "src", "--out", "x.json"], "--from"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and named in err[0], (argv, err)
    assert not (tmp_path / "s").exists()


def test_synth_takes_one_object_count_as_exactly_that_many(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["data", "synth", str(out), "images=3", "val_images=1", "size=96", "objects=2", "seed=5"]) == 0
    train = json.loads((out / "annotations" / "train.json").read_text())
    per_image = [sum(a["image_id"] == im["id"] for a in train["annotations"]) for im in train["images"]]
    assert per_image == [2, 2, 2]
    with pytest.raises(UserError, match="objects"):
        api.synth_with(tmp_path / "t", api.DataSynthSettings(objects=(1, 2, 3)))


def test_model_info_by_key_equals_by_flag(capsys):
    assert main(["model", "info", "tinynas-n", "size=320", "unfused=true"]) == 0
    by_key = capsys.readouterr().out
    assert main(["model", "info", "tinynas-n", "--size", "320", "--unfused"]) == 0
    assert capsys.readouterr().out == by_key and "training form, 320x320" in by_key


def test_cfg_lists_the_settings_of_the_newly_generated_commands(capsys):
    assert main(["cfg", "data", "synth", "out", "objects=2,6", "--seed", "4"]) == 0
    out = capsys.readouterr().out
    assert "objects" in out and "command line (objects=)" in out and "command line (--seed)" in out
    assert main(["cfg", "latency", "rehash", "cpu-fp32", "rows=12"]) == 0
    assert "command line (rows=)" in capsys.readouterr().out


CHAIN = """name: c
out: {out}
distill: {{method: cwd}}
common:
  train: {{epochs: 12}}
stages:
  - {{name: L, recipe: {recipe}}}
  - {{name: S, recipe: {recipe}}}
"""


def test_a_chain_file_takes_key_value_settings_and_a_bad_one_is_named(tmp_path):
    from pathlib import Path

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "train" / "synthetic-tiny.yaml"
    chain_file = tmp_path / "c.yaml"
    chain_file.write_text(CHAIN.format(out=tmp_path / "runs", recipe=recipe))
    plain = load_chain(chain_file)
    assert [s.recipe.train.epochs for s in plain.stages] == [12, 12]
    changed = load_chain(chain_file, Overrides.parse(["common.train.epochs=3", f"out={tmp_path / 'other'}",
                                                      "distill.method=mgd"], COMMAND_LINE))
    assert [s.recipe.train.epochs for s in changed.stages] == [3, 3]
    assert changed.out == tmp_path / "other" and changed.stages[1].recipe.distill.method == "mgd"
    with pytest.raises(UserError) as caught:
        load_chain(chain_file, Overrides.parse(["baseline=maybe"], COMMAND_LINE))
    assert str(caught.value).startswith(COMMAND_LINE) and "baseline" in str(caught.value)
    with pytest.raises(UserError) as caught:
        load_chain(chain_file, Overrides.parse(["stagez=1"], COMMAND_LINE))
    assert "stagez" in str(caught.value) and "stages" in str(caught.value)
