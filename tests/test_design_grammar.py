"""`tinynas design DATA key=value --flag ...`: every design setting is a flag and a key, both
read as the DesignSpec field's type, an error naming who set the value (issue 24)."""

from __future__ import annotations

import pytest

from tinynas.api import design_spec
from tinynas.cli import main
from tinynas.cli.design_commands import FLAGS
from tinynas.config import Overrides
from tinynas.design import DesignSpec
from tinynas.errors import UserError


def test_key_value_settings_become_a_typed_spec():
    spec = design_spec("d.yaml", Overrides.parse(["budget=latency=22ms", "teacher_factors=2,3", "epochs=30",
                                                  "baselines=true", "budgets=[layers=25]", "init=[a, b]"]))
    assert spec == DesignSpec(data="d.yaml", budget="latency=22ms", teacher_factors=(2.0, 3.0), epochs=30,
                              baselines=True, budgets=("layers=25",), init=("a", "b"))


def test_every_design_setting_but_the_data_and_the_match_scale_has_a_flag():
    from dataclasses import fields

    assert {f.key for f in FLAGS} == {f.name for f in fields(DesignSpec)} - {"data", "table_scale"}


@pytest.mark.parametrize("argv, words", [
    (["budget=latency=3ms", "epochs=0"], "command line: epochs: expected a positive integer, got 0"),
    (["--budget", "latency=3ms", "--epochs", "0"], "--epochs: epochs: expected a positive integer, got 0"),
    (["--epochs", "5"], "--budget: missing: the deployed detector's latency"),
    (["--budget", "latency=3ms", "teacher_factors=1,x"], "teacher_factors: expected a list of numbers, got '1,x'"),
    (["--budget", "latency=3ms", "colour=red"], "command line: colour: unknown key"),
])
def test_bad_settings_are_one_line_errors_naming_the_flag_or_key(tmp_path, capsys, argv, words):
    assert main(["design", str(tmp_path / "d.yaml"), *argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]
    assert not (tmp_path / "out").exists()


def test_a_flag_given_after_a_key_wins_and_old_spellings_still_work(tmp_path, capsys, monkeypatch):
    seen = {}

    def stop(spec, out, **options):  # the spec the design would start with; nothing runs
        seen["spec"] = spec
        raise KeyboardInterrupt

    monkeypatch.setattr("tinynas.api.design", stop)
    assert main(["design", "d.yaml", "epochs=7", "--epochs", "9", "--budget", "latency=5ms", "--db", "cpu-fp32",
                 "--backbone-budget", "layers=20", "--backbone-budget", "params=2M", "seed=4", "--baselines",
                 "--teacher-factors", "2"]) == 130
    spec = seen["spec"]
    assert (spec.epochs, spec.latency_db, spec.budgets, spec.seed, spec.baselines, spec.teacher_factors) == \
        (9, "cpu-fp32", ("layers=20", "params=2M"), 4, True, (2.0,))
    assert "--db is now --latency-db" in capsys.readouterr().err
