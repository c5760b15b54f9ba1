"""``tinynas search``: recipes, command-line overrides, shipped DAMO-YOLO recipes, one-line errors."""

import json

import pytest

from conftest import ROOT
from tinynas.cli import main
from tinynas.search.budgets import Budget
from tinynas.search.search_recipe import load_recipe, recipe_space


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_command_line_keys_override_the_recipe(tmp_path, capsys):
    recipe = tmp_path / "small.yaml"
    recipe.write_text("space: k1kx\nbudgets: {flops: 3G, layers: 20}\ncandidates: 100000\n"
                      "population: 16\nstage_weights: [0, 0, 1, 1, 16]\nseed: 3\n")
    out = tmp_path / "run"
    code, stdout, _ = run(capsys, "search", recipe, "--candidates", 600, "--budget", "flops=5G",
                          "--out", out, "--quiet")
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    config = summary["config"]
    assert config["candidates"] == 600 and config["population"] == 16 and config["seed"] == 3
    assert config["budgets"] == ["flops=5G", "layers=20"]
    assert config["weights"] == [0, 0, 1, 1, 16]
    best = summary["rungs"][0]["best"]
    assert 2 * best["macs"] <= 5e9 and best["layers"] <= 20
    assert "best [flops=5G, layers=20]: score" in stdout and str(out / "best.yaml") in stdout


def test_a_ladder_on_the_command_line_replaces_the_recipe_budget(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("space: k1kx\nbudgets: {flops: 3G, layers: 20}\npopulation: 8\n")
    out = tmp_path / "ladder"
    code, stdout, _ = run(capsys, "search", recipe, "--ladder", "flops=2G,4G", "--candidates", 300,
                          "--out", out, "--quiet")
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["budgets"] == ["layers=20"]
    assert summary["config"]["ladder"] == ["flops=2G", "flops=4G"]
    assert (out / "best-flops-2G.yaml").is_file() and (out / "best-flops-4G.txt").is_file()


@pytest.mark.parametrize("name, space, budgets", [
    ("t", "k1kx", (Budget("latency", 0.08), Budget("layers", 20))),
    ("s", "k1kx", (Budget("latency", 0.12), Budget("layers", 25))),
    ("m", "kxkx", (Budget("latency", 0.4), Budget("layers", 35))),
])
def test_shipped_damoyolo_recipes_carry_the_published_budgets(name, space, budgets):
    recipe = load_recipe(ROOT / "recipes" / "search" / f"damoyolo-{name}.yaml")
    assert recipe["budgets"] == budgets
    assert recipe["population"] == 512 and recipe["candidates"] == 500000
    assert recipe["stage_weights"] == [0, 0, 1, 1, 16]
    searched = recipe_space(recipe, None)
    assert searched.name == space and searched.resolution == 320 and searched.in_channels == 12
    if name == "t":
        assert [searched.limits[i].out for i in (2, 4, 5)] == [(64, 96), (128, 192), (256, 384)]


def test_missing_latency_table_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("tinynas.search.search_recipe.DEFAULT_LATENCY_DB", str(tmp_path / "none.csv"))
    code, _, err = run(capsys, "search", "--space", "k1kx", "--budget", "latency=0.1ms", "--out", tmp_path / "x")
    assert code == 2 and err.count("\n") == 1
    assert "none.csv" in err and "latency table not found" in err
    code, _, err = run(capsys, "search", ROOT / "recipes" / "search" / "damoyolo-s.yaml",
                       "--latency-db", tmp_path / "gone.csv", "--out", tmp_path / "y")
    assert code == 2 and "gone.csv" in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.parametrize("argv, words", [
    (["--space", "k1kx", "--budget", "speed=1"], "--budget: unknown budget 'speed'"),
    (["--space", "k1kx", "--budget", "flops=lots"], "cannot read flops limit"),
    (["--space", "nowhere", "--budget", "flops=1G"], "nowhere"),
    (["--budget", "flops=1G"], "space: missing"),
    (["--space", "k1kx", "--budget", "flops=1G", "--stage-weights", "1,2"], "stage_weights"),
    (["--resume", "runs/x", "--seed", "3"], "a resumed run keeps its stored settings"),
])
def test_user_mistakes_exit_2_with_one_line(tmp_path, capsys, argv, words):
    code, _, err = run(capsys, "search", *argv, "--quiet")
    assert code == 2 and words in err and err.count("\n") == 1


def test_recipe_mistakes_name_the_file_and_field(tmp_path, capsys):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("space: k1kx\nbudgets: {flops: 3G}\npopulaton: 8\n")
    code, _, err = run(capsys, "search", recipe)
    assert code == 2 and f"{recipe}: populaton: unknown key" in err
    recipe.write_text("space: k1kx\nlimits: [null, null, {out: [64, 96]}]\n")
    code, _, err = run(capsys, "search", recipe)
    assert code == 2 and "limits: expected a list of 6 entries" in err
    code, _, err = run(capsys, "search", "--resume", tmp_path)
    assert code == 2 and "no checkpoint here" in err
