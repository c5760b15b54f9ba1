"""``tinynas latency``: shipped tables, predict, validate, import and one-line errors."""

import json
import random

import pytest

from conftest import ROOT, space_path
from tinynas.archio import load_arch
from tinynas.cli import main
from tinynas.errors import UserError
from tinynas.latency import LatencyPredictor, LatencyTable, load_predictor, load_table, space_grid
from tinynas.ops import ConvOp
from tinynas.space import load_space
from test_latency import TINY_SPACE, monotone, synthetic_table

DB = ROOT / "latency_db"
SHIPPED = ["cpu-fp32", "v100-trt-fp32", "v100-trt-fp16", "v100-trt-fp16-damoyolo"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def damoyolo_backbone(name):
    arch = load_arch(ROOT / "recipes" / "archs" / f"damoyolo-{name}.txt")
    return arch.with_block(0, arch.blocks[0].replace(in_channels=12))  # the Focus stem's view


# ------------------------------------------------------------------ shipped tables
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_tables_load_with_provenance(name):
    table = load_table(DB / f"{name}.csv")
    assert len(table) > 100 and table.meta["status"] == "complete"
    if name.startswith("v100"):
        assert table.meta["license"] == "Apache-2.0" and "lightweight-neural-architecture-search" in table.meta["source"]
        assert table.batch == 32 and table.device == "cuda"
    else:
        assert table.device == "cpu" and table.batch == 1 and table.meta["threads"] >= 1
        assert "validation" in table.meta  # figures of the final validate are recorded


@pytest.mark.parametrize("space_name", ["k1kx", "kxkx"])
def test_shipped_cpu_table_prices_random_archs_of_the_detection_spaces(space_name):
    space = load_space(space_path(space_name))
    predictor = load_predictor(DB / "cpu-fp32.csv", device="cpu", dtype="fp32")
    rng = random.Random(11)
    for _ in range(30):
        arch = space.random_arch(rng)
        blocks = predictor.predict_blocks_ms(arch, space.resolution)
        total = predictor.predict_ms(arch, space.resolution)
        assert all(b > 0 for b in blocks) and total == pytest.approx(sum(blocks) + predictor.overhead_ms)
    assert not predictor.extrapolated


def test_damoyolo_table_predicts_near_the_budgets_damoyolo_searched_with():
    predictor = load_predictor(DB / "v100-trt-fp16-damoyolo.csv", device="cuda", dtype="fp16")
    t = predictor.predict_ms(damoyolo_backbone("t"), 320) * 1e-3
    s = predictor.predict_ms(damoyolo_backbone("s"), 320) * 1e-3
    assert t == pytest.approx(8e-5, rel=0.15) and s == pytest.approx(12e-5, rel=0.15)
    assert t < s and not predictor.extrapolated


def test_nearest_extrapolation_is_opt_in():
    table = synthetic_table(monotone, [8, 64], [8, 64], sizes=(16,))
    outside = ConvOp("regular", 128, 8, 3, 1, 16, 16)
    with pytest.raises(UserError, match="outside the table's grid"):
        LatencyPredictor(table).op_ms(outside)
    near = LatencyPredictor(LatencyTable(table.rows, {**table.meta, "extrapolation": "nearest"}))
    assert near.op_ms(outside) == table.latency_by_op()[ConvOp("regular", 64, 8, 3, 1, 16, 16)]
    assert near.extrapolated == {outside}


# ------------------------------------------------------------------ commands
def test_predict_prints_blocks_and_total(capsys):
    code, out, _ = run(capsys, "latency", "predict", "damoyolo-t", "--latency-db", "v100-trt-fp16-damoyolo",
                       "--in-channels", "12")
    assert code == 0
    lines = out.splitlines()
    assert sum(1 for line in lines if "SuperResK1KX" in line) == 5
    expected = load_predictor(DB / "v100-trt-fp16-damoyolo.csv").predict_ms(damoyolo_backbone("t"), 320)
    assert f"{expected:.4f} ms per image" in out


def test_import_command_and_one_line_errors(tmp_path, capsys):
    src = tmp_path / "conv_data.out"
    src.write_text("{Regular,8,16,40,40,32,3,1,1} 0.5\n{Regular,8,16,40,40,64,3,1,1} 0.9\n")
    code, out, _ = run(capsys, "latency", "import-tinynas", src, "--out", tmp_path / "x.csv")
    assert code == 0 and "2 ops at batch 8, fp32" in out
    assert json.loads((tmp_path / "x.json").read_text())["extrapolation"] == "tinynas"

    (tmp_path / "x.csv").write_text("kind,in_channels\nregular,3\n")
    code, out, err = run(capsys, "latency", "predict", "damoyolo-t", "--latency-db", tmp_path / "x.csv")
    assert code == 2 and err.count("\n") == 1 and "x.csv" in err and "modified or damaged" in err
    code, out, err = run(capsys, "latency", "rehash", tmp_path / "x.csv")
    assert code == 2 and err.count("\n") == 1 and "x.csv" in err and "missing column" in err

    code, _, err = run(capsys, "latency", "predict", "damoyolo-t", "--latency-db", "no-such-table")
    assert code == 2 and "no-such-table" in err and "cpu-fp32" in err


def test_build_dry_run_and_validate_on_a_tiny_space(tmp_path, capsys):
    import yaml
    space_file = tmp_path / "tiny.yaml"
    space_file.write_text(yaml.safe_dump(TINY_SPACE))
    space = load_space(space_file)
    code, out, _ = run(capsys, "latency", "build", "--space", space_file, "--out", tmp_path / "t.csv", "--dry-run")
    assert code == 0 and out.startswith(f"{len(space_grid(space))} ops")

    code, out, _ = run(capsys, "latency", "build", "--space", space_file, "--out", tmp_path / "t.csv",
                       "--warmup", "1", "--runs", "3")
    assert code == 0 and "complete" in out
    code, out, _ = run(capsys, "latency", "validate", "--latency-db", tmp_path / "t.csv", "--space", space_file,
                       "-n", "4", "--warmup", "1", "--runs", "3", "--out", tmp_path / "val")
    assert code == 0 and "Kendall tau" in out
    report = json.loads((tmp_path / "val" / "report.json").read_text())
    assert report["n"] == 4 and report["raw"]["mape_pct"] >= 0
    assert (tmp_path / "val" / "measurements.csv").read_text().count("\n") == 5
    meta = json.loads((tmp_path / "t.json").read_text())
    assert meta["validation"]["n"] == 4 and meta["scale"] > 0
    # A rerun resumes from the measurements already taken and gives the same figures.
    code, out2, _ = run(capsys, "latency", "validate", "--latency-db", tmp_path / "t.csv", "--space", space_file,
                        "-n", "4", "--warmup", "1", "--runs", "3", "--out", tmp_path / "val", "--no-update")
    assert code == 0 and out2.splitlines()[2] == out.splitlines()[2]


def test_latency_settings_are_keys_as_well_as_flags_and_errors_name_which(tmp_path, capsys):
    flags = run(capsys, "latency", "predict", "damoyolo-t", "--latency-db", "v100-trt-fp16-damoyolo",
                "--resolution", "640")
    keys = run(capsys, "latency", "predict", "damoyolo-t", "latency_db=v100-trt-fp16-damoyolo", "resolution=640")
    assert flags[0] == keys[0] == 0 and flags[1] == keys[1]
    code, _, err = run(capsys, "latency", "build", "--space", "k1kx", "--out", tmp_path / "t.csv", "runs=0")
    assert code == 2 and "command line: runs: expected a positive integer, got 0" in err
    code, _, err = run(capsys, "latency", "build", "--space", "k1kx", "--out", tmp_path / "t.csv", "--dtype", "fp8")
    assert code == 2 and "--dtype: dtype: " in err and "fp8" in err and err.count("\n") == 1
    code, _, err = run(capsys, "latency", "build", "--space", "k1kx", "--dry-run")
    assert code == 2 and "--out: missing" in err
    assert not (tmp_path / "t.csv").exists()
