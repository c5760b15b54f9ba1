"""Latency tables stay trustworthy: one writer at a time, physical values only, a content hash.

Each test drives the real command (``tinynas.cli.main``) or a real second process and checks
the one-line error a user sees (exit code 2, naming the file and the field), or that what was
written is intact.
"""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT
from tinynas.errors import UserError
from tinynas.latency import build_table, load_table, save_table, space_grid
from tinynas.latency import measure
from tinynas.latency.table import read_meta, sidecar_path, table_lock, update_meta
from tinynas.latency.validate import fit_correction
from tinynas.runfolder import lock_folder
from test_latency import TINY_SPACE, monotone, synthetic_table, tiny_space
from test_latency_cli import SHIPPED, run

DB = ROOT / "latency_db"


def sealed(path) -> bool:
    """The sidecar's sha256 is that of the CSV's bytes as they are now."""
    return read_meta(path).get("sha256") == hashlib.sha256(path.read_bytes()).hexdigest()


def one_line_error(code, err, *parts):
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("tinynas: error:"), err
    for part in parts:
        assert str(part) in err, (part, err)


@pytest.fixture
def table(tmp_path):
    """A small valid table: regular 3x3 convs, C_in and C_out in {8, 16}, sizes 16 and 32."""
    path = tmp_path / "t.csv"
    save_table(synthetic_table(monotone, [8, 16], [8, 16]), path)
    return path


def edit_sidecar(path, **changes):
    side = sidecar_path(path)
    meta = json.loads(side.read_text())
    meta.update(changes)
    side.write_text(json.dumps(meta))


def edit_row(path, index, drop_hash, **values):
    """Rewrite the CSV with ``values`` in row ``index`` (CSV line ``index + 2``)."""
    frame = pd.read_csv(path)
    for column, value in values.items():
        frame[column] = frame[column].astype(object)
        frame.loc[index, column] = value
    frame.to_csv(path, index=False)
    if drop_hash:  # an older table, written before tables carried a hash
        meta = json.loads(sidecar_path(path).read_text())
        meta.pop("sha256")
        sidecar_path(path).write_text(json.dumps(meta))


# ------------------------------------------------------------------ one writer per table
def test_a_second_build_of_a_table_is_refused_while_the_first_runs(tmp_path, monkeypatch):
    space_file, out = tmp_path / "tiny.yaml", tmp_path / "tiny.csv"
    space_file.write_text(yaml.safe_dump(TINY_SPACE))
    real_measure = measure.measure_op
    second = {}

    def measure_and_race(*args, **kwargs):
        if not second:  # while the first build is measuring its first op, start another
            second["run"] = subprocess.run(
                [sys.executable, "-m", "tinynas", "latency", "build", "--space", str(space_file),
                 "--out", str(out), "--warmup", "1", "--runs", "2"],
                capture_output=True, text=True, cwd=ROOT, timeout=300,
                env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
        return real_measure(*args, **kwargs)

    monkeypatch.setattr(measure, "measure_op", measure_and_race)
    table = build_table([tiny_space()], out, warmup=1, runs=2, progress=False)

    other = second["run"]
    one_line_error(other.returncode, other.stderr, out, "in use by", f"pid {os.getpid()}")
    grid = space_grid(tiny_space())
    assert table.meta["status"] == "complete"
    loaded = load_table(out)  # duplicate rows would be refused here
    assert len(loaded) == len(grid) and set(loaded.ops()) == set(grid)
    assert out.read_text().count("\n") == len(grid) + 1
    assert sealed(out) and read_meta(out)["rows"] == len(grid)
    assert not (tmp_path / ".tiny.csv.lock").exists()


def test_a_held_table_refuses_rehash_and_import_naming_the_table(table, tmp_path, capsys):
    src = tmp_path / "conv_data.out"
    src.write_text("{Regular,8,16,40,40,32,3,1,1} 0.5\n")
    with table_lock(table):
        code, _, err = run(capsys, "latency", "rehash", table)
        one_line_error(code, err, table, f"pid {os.getpid()}")
        code, _, err = run(capsys, "latency", "import-tinynas", src, "--out", table, "--force")
        one_line_error(code, err, table, "in use by")
    assert sealed(table) and len(load_table(table)) == 8


def test_import_never_replaces_a_table_unless_forced(table, tmp_path, capsys):
    src = tmp_path / "conv_data.out"
    src.write_text("{Regular,8,16,40,40,32,3,1,1} 0.5\n")
    before = table.read_bytes()
    code, _, err = run(capsys, "latency", "import-tinynas", src, "--out", table)
    one_line_error(code, err, table, "--force")
    assert table.read_bytes() == before
    code, _, _ = run(capsys, "latency", "import-tinynas", src, "--out", table, "--force")
    assert code == 0 and len(load_table(table)) == 1


# ------------------------------------------------------------------ sidecar fields
@pytest.mark.parametrize("field, value", [
    ("overhead_ms", -1000), ("overhead_ms", float("nan")), ("overhead_ms", float("inf")), ("overhead_ms", "2"),
    ("scale", 0), ("scale", -1.0), ("batch", True), ("rows", -1), ("rows", 2.5), ("sha256", "abc"),
    ("status", "done"), ("threads", 0), ("clock", "sundial"), ("calibration", {"nominal_ms": -5.0}),
    ("version", 99), ("device", ""), ("extrapolation", "linear"), ("runs", 0),
])
def test_sidecar_fields_out_of_their_physical_range_are_one_line(table, capsys, field, value):
    edit_sidecar(table, **{field: value})
    code, _, err = run(capsys, "latency", "predict", "damoyolo-t", "--latency-db", table)
    one_line_error(code, err, sidecar_path(table), f"{field}: expected")


def test_sidecar_row_count_must_match_the_csv(table, capsys):
    edit_sidecar(table, rows=9)
    code, _, err = run(capsys, "latency", "predict", "damoyolo-t", "--latency-db", table)
    one_line_error(code, err, sidecar_path(table), "rows", "holds 8")


def test_a_negative_overhead_can_neither_be_fitted_nor_stored(table):
    raw = np.linspace(5, 50, 12)
    measured = 1.3 * raw - 2.0  # the table overprices small networks: the free fit's offset is -2
    scale, offset = fit_correction(raw, measured, "affine")
    assert offset == 0.0
    ratio = raw / measured  # the least-squares scale of relative error with the offset held at 0
    assert scale == pytest.approx(ratio.sum() / (ratio ** 2).sum())
    assert fit_correction(raw, raw - 1.0, "offset") == (1.0, 0.0)
    assert fit_correction(raw, raw + 2.0, "offset") == pytest.approx((1.0, 2.0))  # positive ones stay

    with pytest.raises(UserError, match="overhead_ms: expected") as err:
        update_meta(table, overhead_ms=-1.0)
    assert str(sidecar_path(table)) in str(err.value)
    assert read_meta(table)["overhead_ms"] == 0.0


# ------------------------------------------------------------------ rows that make no physical sense
@pytest.mark.parametrize("values, field", [
    ({"latency_ms": 0.0}, "latency_ms"), ({"latency_ms": float("inf")}, "latency_ms"),
    ({"latency_ms": "nan"}, "latency_ms"), ({"spread_ms": -0.1}, "spread_ms"),
    ({"in_channels": 0}, "in_channels"), ({"out_channels": -3}, "out_channels"), ({"kernel": 0}, "kernel"),
    ({"stride": 0}, "stride"), ({"height": 0}, "height"), ({"width": 0}, "width"), ({"groups": 0}, "groups"),
    ({"runs": 0}, "runs"), ({"fused_residual": 2}, "fused_residual"), ({"in_channels": "inf"}, "in_channels"),
    ({"groups": 3}, "groups"),  # 3 groups cannot split 8 channels
    ({"kind": "depthwise", "groups": 8}, "out_channels"),  # row 1 is 8 -> 16: a depthwise conv keeps its channels
    ({"kind": "avgpool", "out_channels": 8, "groups": 1}, "groups"),
])
def test_unphysical_rows_are_refused_naming_file_line_and_field(table, capsys, values, field):
    edit_row(table, 1, drop_hash=True, **values)
    code, _, err = run(capsys, "latency", "predict", "damoyolo-t", "--latency-db", table)
    one_line_error(code, err, table, f"line 3.{field}: expected")


# ------------------------------------------------------------------ the content hash
def test_every_writer_seals_the_table(table, tmp_path):
    assert sealed(table)  # save_table
    src = tmp_path / "conv_data.out"
    src.write_text("{Regular,8,16,40,40,32,3,1,1} 0.5\n{Regular,8,16,40,40,32,3,1,1} -1\n")
    from tinynas.latency import import_tinynas
    import_tinynas(src, tmp_path / "imported.csv")
    assert sealed(tmp_path / "imported.csv")
    update_meta(table, overhead_ms=1.5)
    assert sealed(table) and load_table(table).meta["overhead_ms"] == 1.5


def test_an_edited_table_is_refused_until_rehashed(table, capsys):
    edit_row(table, 1, drop_hash=False, latency_ms=0.5)
    code, _, err = run(capsys, "latency", "predict", "damoyolo-t", "--latency-db", table)
    one_line_error(code, err, table, "modified or damaged after it was written", "tinynas latency rehash")

    code, out, _ = run(capsys, "latency", "rehash", table)
    assert code == 0 and "8 rows checked" in out
    assert sealed(table) and load_table(table).rows["latency_ms"][1] == 0.5


def test_tables_older_than_the_hash_load_and_get_one_when_next_written(table):
    edit_row(table, 1, drop_hash=True, latency_ms=0.5)
    assert "sha256" not in read_meta(table)
    assert load_table(table).rows["latency_ms"][1] == 0.5
    update_meta(table, note="fitted")
    assert sealed(table)


def test_a_build_refuses_to_resume_onto_an_edited_table(tmp_path):
    out = tmp_path / "tiny.csv"
    build_table([tiny_space()], out, warmup=1, runs=2, max_ops=2, progress=False)
    before = out.read_bytes()
    out.write_bytes(before.rstrip(b"\n"))  # an editor dropped the last newline: not a torn row
    with pytest.raises(UserError, match="modified or damaged") as err:
        build_table([tiny_space()], out, warmup=1, runs=2, progress=False)
    assert str(out) in str(err.value)
    assert out.read_bytes() == before.rstrip(b"\n")  # its last row was not cut off as torn


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_tables_carry_their_hash(name):
    assert sealed(DB / f"{name}.csv")
    assert load_table(DB / f"{name}.csv").meta["sha256"] == read_meta(DB / f"{name}.csv")["sha256"]


# ------------------------------------------------------------------ importing TinyNAS tables
GOOD = "{Regular,8,16,40,40,32,3,1,1} 0.5\n"


@pytest.mark.parametrize("line, field", [
    ("{Regular,8,16,40,40,0,3,1,1} 0.5", "Out_C"),
    ("{Regular,8,0,40,40,32,3,1,1} 0.5", "In_C"),
    ("{Regular,8,16,0,40,32,3,1,1} 0.5", "In_H"),
    ("{Regular,8,16,40,40,32,0,1,1} 0.5", "Kernel"),
    ("{Regular,8,16,40,40,32,3,0,1} 0.5", "Stride"),
    ("{Regular,0,16,40,40,32,3,1,1} 0.5", "Batch"),
    ("{Depthwise,8,16,40,40,32,3,1,0} 0.5", "Out_C"),
    ("{Regular,8,16,40,40,64,3,1,1} inf", "latency"),
    ("{Regular,8,16,40,40,64,3,1,1} nan", "latency"),
    ("{Regular,8,16,40,40,64,3,1,1} 0", "latency"),
    ("{Regular,8,16,40,40,64,3,1,1} -0.5", "latency"),  # only -1 marks a failed measurement
])
def test_import_refuses_a_bad_line_naming_file_and_line(tmp_path, capsys, line, field):
    src = tmp_path / "conv_data.out"
    src.write_text(GOOD + line + "\n")
    code, _, err = run(capsys, "latency", "import-tinynas", src, "--out", tmp_path / "x.csv")
    one_line_error(code, err, src, f"line 2.{field}: expected")
    assert not (tmp_path / "x.csv").exists()


def test_import_drops_failed_measurements_but_needs_one_usable_line(tmp_path, capsys):
    src = tmp_path / "conv_data.out"
    src.write_text("{Regular,8,16,40,40,32,3,1,1} -1\n{Regular,8,16,40,40,64,3,1,1} -1.000000\n")
    code, _, err = run(capsys, "latency", "import-tinynas", src, "--out", tmp_path / "x.csv")
    one_line_error(code, err, src, "no usable op line", "all 2")
    assert not (tmp_path / "x.csv").exists()

    src.write_text(GOOD + "{Regular,16,16,40,40,32,3,1,1} -1\n")
    code, _, err = run(capsys, "latency", "import-tinynas", src, "--out", tmp_path / "x.csv", "--batch-size", "16")
    one_line_error(code, err, src, "no usable op line at batch 16")

    src.write_text(GOOD + "{Regular,8,16,40,40,64,3,1,1} -1\n")
    code, out, _ = run(capsys, "latency", "import-tinynas", src, "--out", tmp_path / "x.csv")
    assert code == 0 and "1 ops at batch 8" in out and "1 failed measurements dropped" in out
    assert sealed(tmp_path / "x.csv") and len(load_table(tmp_path / "x.csv")) == 1


# ------------------------------------------------------------------ validate --out
@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    space_file = folder / "tiny.yaml"
    space_file.write_text(yaml.safe_dump(TINY_SPACE))
    build_table([tiny_space()], folder / "t.csv", warmup=1, runs=2, progress=False)
    return folder / "t.csv", space_file


def validate_args(tiny_table, out, *extra):
    table, space_file = tiny_table
    return ["latency", "validate", "--latency-db", table, "--space", space_file, "-n", "2", "--warmup", "1",
            "--runs", "1", "--rounds", "1", "--no-update", "--out", out, *extra]


def test_validate_out_on_a_file_is_one_line_even_with_force(tiny_table, tmp_path, capsys):
    out = tmp_path / "report.txt"
    out.write_text("mine\n")
    for extra in ((), ("--force",)):
        code, _, err = run(capsys, *validate_args(tiny_table, out, *extra))
        one_line_error(code, err, out, "--out", "is a file")
    assert out.read_text() == "mine\n"


def test_validate_out_needs_force_for_a_folder_of_other_files(tiny_table, tmp_path, capsys):
    out = tmp_path / "val"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    code, _, err = run(capsys, *validate_args(tiny_table, out))
    one_line_error(code, err, out, "--out", "--force")
    assert not (out / "measurements.csv").exists()

    code, text, _ = run(capsys, *validate_args(tiny_table, out, "--force"))
    assert code == 0 and "Kendall tau" in text
    assert (out / "measurements.csv").read_text().count("\n") == 3 and (out / "notes.txt").exists()
    assert not (out / ".tinynas.lock").exists()
    code, _, _ = run(capsys, *validate_args(tiny_table, out))  # its own folder: a rerun resumes
    assert code == 0


def test_validate_into_a_folder_in_use_fails_at_once(tiny_table, tmp_path, capsys):
    out = tmp_path / "val"
    lock = lock_folder(out, "validation folder")
    try:
        code, _, err = run(capsys, *validate_args(tiny_table, out))
    finally:
        lock.release()
    one_line_error(code, err, out, "in use by", f"pid {os.getpid()}")
    assert not (out / "measurements.csv").exists()
