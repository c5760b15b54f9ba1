"""Latency tables built on a fleet: ``build --shard I/N`` and ``merge`` give the table one build gives."""

import json

import pandas as pd
import pytest
import yaml

from conftest import ROOT, space_path
from test_latency import TINY_SPACE, tiny_space
from tinynas.cli import main
from tinynas.errors import UserError
from tinynas.latency import build_table, load_table, merge_shards, rehash_table, space_grid, split_ops
from tinynas.latency import calibrate, measure
from tinynas.latency.shards import op_cost, ops_sha256
from tinynas.latency.grid import grid_ops, merge_groups, space_groups
from tinynas.latency.measure import Timing
from tinynas.latency.table import KEY_COLUMNS, format_row, read_meta, sidecar_path, table_lock
from tinynas.ops import ConvOp
from tinynas.space import load_space, space_from_dict

BOARD_NOMINAL_MS = 5.0


def fake_ms(op):
    """A deterministic stand-in for a measured latency, distinct for every op."""
    return 1e-8 * op_cost(op) + 1e-3 * op.in_channels + 1e-4 * op.out_channels


@pytest.fixture
def fake_timer(monkeypatch):
    """Every op "measures" ``fake_ms``; on a calibrated board, at that board's nominal speed:
    a calibrated row is the op's time relative to the reference conv times the nominal."""
    def measure_op(op, setup, batch=1, warmup=1, runs=1, act=None, seed=0):
        scale = setup.reference.nominal_ms / BOARD_NOMINAL_MS if setup.reference is not None else 1.0
        return Timing(fake_ms(op) * scale, 0.01 * fake_ms(op) * scale, runs)

    monkeypatch.setattr(measure, "measure_op", measure_op)


@pytest.fixture
def boards(monkeypatch):
    """Calibrated boards whose reference conv runs at the nominal times listed, one per build."""
    nominals = []

    def fix_nominal(self):
        self.nominal_ms = nominals.pop(0)
        return self.nominal_ms

    monkeypatch.setattr(calibrate.SpeedReference, "fix_nominal", fix_nominal)
    return nominals


def other_space():
    return space_from_dict({**TINY_SPACE, "name": "tiny5", "defaults": {**TINY_SPACE["defaults"], "kernels": [3, 5]}},
                           "<tiny5>")


def build(spaces, out, **options):
    return build_table(spaces, out, warmup=1, runs=2, progress=False, **{"calibrate": False, **options})


def build_shards(tmp_path, spaces, count, indices=None, **options):
    paths = []
    for i in indices or range(1, count + 1):
        build(spaces, tmp_path / f"shard{i}.csv", shard=(i, count), **options)
        paths.append(tmp_path / f"shard{i}.csv")
    return paths


def edit_sidecar(path, change):
    meta = json.loads(sidecar_path(path).read_text())
    change(meta)
    sidecar_path(path).write_text(json.dumps(meta))


def sorted_rows(path):
    rows = load_table(path, allow_incomplete=True).rows
    return rows.sort_values(list(KEY_COLUMNS)).reset_index(drop=True)


# ------------------------------------------------------------------ the split
def test_split_covers_the_grid_once_whatever_the_order_and_balances_estimated_time():
    ops = space_grid(load_space(space_path("k1kx")), channel_step=64)
    for count in (1, 2, 3, 7):
        parts = split_ops(ops, count)
        assert sorted(op for part in parts for op in part) == sorted(ops)  # each op exactly once
        assert split_ops(list(reversed(ops)), count) == parts == split_ops(ops + ops[:5], count)
        assert all(part == sorted(part) for part in parts)  # measured in the build's stable order
        loads = [sum(map(op_cost, part)) for part in parts]
        # Greedy dealing of the largest first leaves at most one op's worth of difference.
        assert max(loads) - min(loads) <= max(map(op_cost, ops))
    # The order spaces are given in does not change the grid, hence not the split.
    a, b = tiny_space(), other_space()
    ab = grid_ops(merge_groups(space_groups(a), space_groups(b)))
    ba = grid_ops(merge_groups(space_groups(b), space_groups(a)))
    assert split_ops(ab, 3) == split_ops(ba, 3)


def test_split_balances_the_measured_build_time_of_the_shipped_cpu_table():
    # The shipped table's ops with their measured latencies: a build times each 3 + 10 times
    # and brackets it with calibration references (~15 ms each, one per 50 ms of runs).
    table = load_table(ROOT / "latency_db" / "cpu-fp32.csv")
    latency = table.latency_by_op()
    ops = sorted(latency)

    def seconds(part):
        return sum(13 * latency[op] + 15 * (2 + int(10 * latency[op] // 50)) for op in part) / 1e3

    for count in (4, 8):
        loads = [seconds(part) for part in split_ops(ops, count)]
        assert max(loads) / (sum(loads) / count) < 1.02
        naive = [seconds(ops[i * len(ops) // count:(i + 1) * len(ops) // count]) for i in range(count)]
        assert max(naive) / (sum(naive) / count) > 1.1  # equal op counts are not equal times


# ------------------------------------------------------------------ shard + merge == one build
def test_shards_merged_give_byte_for_byte_the_table_of_one_build(tmp_path, fake_timer):
    a, b = tiny_space(), other_space()
    whole = build([a, b], tmp_path / "whole.csv")
    shards = build_shards(tmp_path, [a, b], 3, indices=[1, 3])
    build([b, a], tmp_path / "shard2.csv", shard="2/3")  # the order of spaces is not part of the grid
    shards.insert(1, tmp_path / "shard2.csv")
    for path in shards:
        meta = read_meta(path)
        assert meta["status"] == "complete" and meta["shard"]["grid_ops"] == len(whole)
        assert meta["shard"]["spaces"] == ["tiny", "tiny5"] and meta["shard"]["ops"] == len(load_table(path))

    merged = merge_shards(list(reversed(shards)), tmp_path / "merged.csv")
    assert (tmp_path / "merged.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()
    assert merged.meta["status"] == "complete" and merged.meta["rows"] == len(whole)
    info = merged.meta["merged"]
    assert info["missing_shards"] == [] and [s["index"] for s in info["shards"]] == [1, 2, 3]
    loaded = load_table(tmp_path / "merged.csv")  # sealed: its sha256 checks on load
    assert loaded.meta["sha256"] == whole.meta["sha256"] and set(loaded.ops()) == set(whole.ops())
    with pytest.raises(UserError, match="already exists"):
        merge_shards(shards, tmp_path / "merged.csv")
    with table_lock(tmp_path / "merged.csv"), pytest.raises(UserError, match="in use"):
        merge_shards(shards, tmp_path / "merged.csv", force=True)
    with pytest.raises(UserError, match="is one of the shards"):
        merge_shards(shards, shards[0], force=True)


def test_calibrated_shards_are_rescaled_to_their_median_nominal(tmp_path, fake_timer, boards):
    space = tiny_space()
    boards.extend([BOARD_NOMINAL_MS, 4.6, 5.0, 5.5])  # one board alone, then three shards on three boards
    whole = build([space], tmp_path / "whole.csv", calibrate=True)
    shards = build_shards(tmp_path, [space], 3, calibrate=True)
    merged = merge_shards(shards, tmp_path / "merged.csv")
    assert merged.meta["calibration"]["nominal_ms"] == 5.0
    assert [s["scaled_by"] for s in merged.meta["merged"]["shards"]] == pytest.approx([5 / 4.6, 1.0, 5 / 5.5])
    got, want = sorted_rows(tmp_path / "merged.csv"), sorted_rows(tmp_path / "whole.csv")
    keys = list(KEY_COLUMNS)
    assert got[keys].values.tolist() == want[keys].values.tolist()
    assert got["latency_ms"].to_numpy() == pytest.approx(want["latency_ms"].to_numpy(), rel=2e-5)
    assert len(whole) == len(merged)

    boards.extend([4.0, 6.0])  # no longer board-to-board spread: refused, unless the user says so
    (tmp_path / "far").mkdir()
    far = build_shards(tmp_path / "far", [space], 2, calibrate=True)
    with pytest.raises(UserError, match=r"shard2\.json: calibration\.nominal_ms: 6 ms here, 4 ms in shard1\.csv"):
        merge_shards(far, tmp_path / "far.csv")
    assert merge_shards(far, tmp_path / "far.csv", max_nominal_ratio=1.6).meta["calibration"]["nominal_ms"] == 5.0


# ------------------------------------------------------------------ refusals
MISMATCHES = [
    ("device_name", lambda m: m.update(device_name="Another CPU (aarch64)")),
    ("dtype", lambda m: m.update(dtype="bf16")),
    ("batch", lambda m: m.update(batch=4)),
    ("threads", lambda m: m.update(threads=2)),
    ("clock", lambda m: m.update(clock="wall")),
    ("allocator", lambda m: m.update(allocator="default")),
    ("warmup", lambda m: m.update(warmup=5)),
    ("runs", lambda m: m.update(runs=20)),
    ("calibrated", lambda m: m.update(calibrated=True)),
    ("torch_version", lambda m: m.update(torch_version="2.0.0")),
    ("runtime", lambda m: m.update(runtime="onnxruntime 1.17")),
    ("device", lambda m: m.update(device="cuda")),
    ("shard.count", lambda m: m["shard"].update(count=3)),
    ("shard.channel_step", lambda m: m["shard"].update(channel_step=8)),
    ("shard.resolution", lambda m: m["shard"].update(resolution=[32])),
    ("shard.spaces", lambda m: m["shard"].update(spaces=["other"])),
    ("shard.grid_sha256", lambda m: m["shard"].update(grid_sha256="0" * 64)),
    ("shard.split", lambda m: m["shard"].update(split="round-robin")),
    ("shard", lambda m: m.update(shard=None)),
    ("shard.index", lambda m: m["shard"].update(index=0)),
    ("shard.count", lambda m: m["shard"].update(count=10 ** 12)),
    ("calibration.nominal_ms", lambda m: m.update(calibration={"nominal_ms": 5.0})),
]


@pytest.mark.parametrize("field,change", MISMATCHES, ids=[m[0] for m in MISMATCHES])
def test_shards_measured_differently_are_refused_naming_file_and_field(tmp_path, fake_timer, field, change):
    shards = build_shards(tmp_path, [tiny_space()], 2)
    edit_sidecar(shards[1], change)
    with pytest.raises(UserError) as err:
        merge_shards(shards, tmp_path / "merged.csv")
    assert str(err.value).startswith(f"{sidecar_path(shards[1])}: {field}: ")
    assert not (tmp_path / "merged.csv").exists()


def test_missing_repeated_overlapping_and_edited_shards_are_refused(tmp_path, fake_timer):
    space = tiny_space()
    s1, s2, s3 = build_shards(tmp_path, [space], 3)
    out = tmp_path / "merged.csv"
    with pytest.raises(UserError, match=r"shard1\.json: shard\.count: the grid has 3 shards and 2/3 is missing"):
        merge_shards([s1, s3], out)
    with pytest.raises(UserError, match=r"shard\.index: shard 1/3 is also .*shard1\.csv: give each shard once"):
        merge_shards([s1, s2, s3, s1], out)

    grid = split_ops(space_grid(space), 3)
    twice = tmp_path / "twice.csv"  # shard 1 with an op of shard 2 added, accepted by rehash
    twice.write_text(s1.read_text() + s2.read_text().splitlines()[1] + "\n")
    sidecar_path(twice).write_text(sidecar_path(s1).read_text())
    rehash_table(twice, rows=len(grid[0]) + 1)  # a row more than its sidecar says: stated
    with pytest.raises(UserError, match=r"twice\.csv: line \d+: .* is also measured in .*shard2\.csv: shards overlap"):
        merge_shards([s2, twice, s3], out)
    with pytest.raises(UserError, match=r"twice\.csv: its rows are not the ops of shard 1/3"):
        merge_shards([twice, s2, s3], out)

    lines = s2.read_text().splitlines(keepends=True)
    s2.write_text("".join(lines[:-1]))  # a row deleted on purpose, and rehashed
    rehash_table(s2, rows=len(grid[1]) - 1)
    held = f"holds {len(grid[1]) - 1} of its {len(grid[1])} ops"
    with pytest.raises(UserError, match=rf"shard2\.json: status: shard 2/3 {held}"):
        merge_shards([s1, s2, s3], out)
    s2.write_text("".join(lines[:-1]) + format_row(ConvOp("regular", 999, 8, 3, 1, 16, 16), 1.0, 0.0, 2))
    rehash_table(s2, rows=len(grid[1]))
    with pytest.raises(UserError, match=r"shard2\.csv: its rows are not the ops of shard 2/3"):
        merge_shards([s1, s2, s3], out)
    assert not out.exists()


def test_a_partial_merge_records_what_is_missing_and_a_build_completes_it(tmp_path, fake_timer):
    space = tiny_space()
    whole = build([space], tmp_path / "whole.csv")
    s1 = build_shards(tmp_path, [space], 3, indices=[1])[0]
    s2 = tmp_path / "shard2.csv"
    build([space], s2, shard="2/3", max_ops=2)  # a board that stopped early
    with pytest.raises(UserError, match=r"shard2\.json: status: shard 2/3 holds 2 of its"):
        merge_shards([s1, s2], tmp_path / "merged.csv")

    out = tmp_path / "merged.csv"
    parts = split_ops(space_grid(space), 3)
    merged = merge_shards([s1, s2], out, allow_partial=True)
    info = merged.meta["merged"]
    assert merged.meta["status"] == "incomplete" and info["missing_shards"] == [3] and info["unfinished_shards"] == [2]
    assert [s["missing_ops"] for s in info["shards"]] == [0, len(parts[1]) - 2]
    assert info["missing_ops"] == len(parts[2]) + len(parts[1]) - 2 == len(whole) - len(merged)
    with pytest.raises(UserError, match="did not finish"):
        load_table(out)
    done = build([space], out)  # the merged table resumes as any partial table: only the gaps are measured
    assert done.meta["status"] == "complete" and done.meta["merged"]["missing_shards"] == [3]
    pd.testing.assert_frame_equal(sorted_rows(out), sorted_rows(tmp_path / "whole.csv"))


def test_a_shard_resumes_only_as_itself(tmp_path, fake_timer):
    space, out = tiny_space(), tmp_path / "shard.csv"
    first = build([space], out, shard=(1, 2), max_ops=2)
    assert len(first) == 2 and first.meta["status"] == "incomplete"
    for other in ((2, 2), (1, 3), None):
        with pytest.raises(UserError, match=r"shard\.json: shard: the existing table has"):
            build([space], out, shard=other)
    with pytest.raises(UserError, match="shard: the existing table has"):
        build([space], out, shard=(1, 2), channel_step=16)  # another grid: another part
    with pytest.raises(UserError, match="shard: the existing table has"):
        build([space, other_space()], out, shard=(1, 2))
    done = build([space], out, shard="1/2")
    assert done.meta["status"] == "complete" and set(done.ops()) == set(split_ops(space_grid(space), 2)[0])
    assert done.meta["shard"]["ops_sha256"] == ops_sha256(done.ops())
    with pytest.raises(UserError, match=r"--shard: 40 shards for a grid of \d+ ops"):
        build([space], tmp_path / "many.csv", shard=(1, 40))
    for bad in ("0/2", "3/2", "1-2", (1,)):
        with pytest.raises(UserError, match="--shard"):
            build([space], tmp_path / "bad.csv", shard=bad)
    assert not (tmp_path / "bad.csv").exists() and not (tmp_path / "many.csv").exists()


# ------------------------------------------------------------------ the commands
def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_build_shard_and_merge_commands(tmp_path, capsys, fake_timer):
    space_file = tmp_path / "tiny.yaml"
    space_file.write_text(yaml.safe_dump(TINY_SPACE))
    common = ["--space", space_file, "--warmup", "1", "--runs", "2", "--no-calibrate"]
    grid = len(space_grid(tiny_space()))
    code, out, _ = run(capsys, "latency", "build", *common, "--out", tmp_path / "s.csv", "--shard", "2/2", "--dry-run")
    assert code == 0 and out.startswith(f"{grid} ops") and "shard 2/2: 15 ops, 48." in out
    for i in (1, 2):
        code, out, _ = run(capsys, "latency", "build", *common, "--out", tmp_path / f"s{i}.csv", "--shard", f"{i}/2")
        assert code == 0 and f"(shard {i}/2 of a {grid}-op grid), complete" in out
    code, out, _ = run(capsys, "latency", "build", *common, "--out", tmp_path / "whole.csv")
    assert code == 0

    s1, s2 = tmp_path / "s1.csv", tmp_path / "s2.csv"
    code, out, _ = run(capsys, "latency", "merge", s1, s2, "--out", tmp_path / "m.csv")
    assert code == 0 and out == f"{tmp_path / 'm.csv'}: {grid} ops from 2 of 2 shards, complete\n"
    assert (tmp_path / "m.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()

    code, out, err = run(capsys, "latency", "merge", s1, "--out", tmp_path / "p.csv", "--allow-partial")
    assert code == 0 and "incomplete (15 ops missing;" in out
    edit_sidecar(tmp_path / "s2.csv", lambda m: m.update(runs=3))
    code, out, err = run(capsys, "latency", "merge", s1, s2, "--out", tmp_path / "x.csv")
    assert code == 2 and err.count("\n") == 1 and f"{tmp_path / 's2.json'}: runs: 3 here, 2 in s1.csv" in err
    code, out, err = run(capsys, "latency", "merge", tmp_path / "s1.csv", "--out", tmp_path / "x.csv")
    assert code == 2 and err.count("\n") == 1 and "2/2 is missing" in err
    code, out, err = run(capsys, "latency", "build", *common, "--out", tmp_path / "s1.csv", "--shard", "2/2")
    assert code == 2 and err.count("\n") == 1 and "s1.json: shard: the existing table has" in err
    code, out, err = run(capsys, "latency", "build", *common, "--out", tmp_path / "y.csv", "--shard", "3/2")
    assert code == 2 and err == "tinynas: error: --shard: shard 3/2: the index runs from 1 to the count\n"


# ------------------------------------------------------------------ Ray
def test_shards_run_on_a_local_ray_cluster_and_rerun_only_what_is_missing(tmp_path):
    ray = pytest.importorskip("ray")
    from tinynas.latency import run_shards_with_ray

    space = tiny_space()
    ray.init(num_cpus=2, resources={"latency_board": 2}, include_dashboard=False, log_to_driver=False)
    try:
        table = run_shards_with_ray([space], tmp_path / "t.csv", 2, warmup=1, runs=2, calibrate=False)
        assert table.meta["status"] == "complete"
        assert set(load_table(tmp_path / "t.csv").ops()) == set(space_grid(space))
        shard_files = sorted((tmp_path / "t.shards").glob("*.csv"))
        assert [p.name for p in shard_files] == ["t.shard-1-of-2.csv", "t.shard-2-of-2.csv"]
        shard_files[1].unlink()  # a board's shard lost: only that one is measured again
        kept = shard_files[0].stat().st_mtime_ns
        again = run_shards_with_ray([space], tmp_path / "t.csv", 2, force=True, warmup=1, runs=2, calibrate=False)
        assert again.meta["status"] == "complete" and shard_files[1].exists()
        assert shard_files[0].stat().st_mtime_ns == kept
        with pytest.raises(UserError, match="--batch-size: must be positive"):  # refused on a board, one line here
            run_shards_with_ray([space], tmp_path / "u.csv", 2, batch=0)
    finally:
        ray.shutdown()
