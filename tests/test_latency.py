"""Latency tables: the grid covers the space, interpolation, import, corrupt tables, resume."""

import json
import random

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import SPACE_NAMES, space_path
from tinynas.arch import Arch, BlockSpec
from tinynas.errors import UserError
from tinynas.latency import (LatencyPredictor, LatencyTable, build_table, covered, export_tinynas,
                             import_tinynas, load_predictor, load_table, rehash_table, save_table, space_grid,
                             space_groups)
from tinynas.latency.netops import AVGPOOL, block_ops
from tinynas.latency.table import append_row, base_meta, op_row, read_meta, rows_frame, sidecar_path
from tinynas.latency.validate import fit_correction, leave_one_out, validate_table
from tinynas.ops import ConvOp, block_op_counts, conv_op_counts
from tinynas.space import load_space, space_from_dict

TINY_SPACE = {
    "name": "tiny", "resolution": 16, "in_channels": 3, "channel_divisor": 8,
    "defaults": {"out": [8, 24], "L": [1, 2], "btn_ratio": [0.5, 1.0], "kernels": [3]},
    "initial": [
        {"class": "ConvKXBNRELU", "in": 3, "out": 8, "s": 1, "k": 3},
        {"class": "SuperResK1KX", "in": 8, "out": 16, "s": 2, "k": 3, "L": 1, "btn": 8},
    ],
    "blocks": [{"out": [8, 16]}, {"out": [16, 24]}],
}


def tiny_space():
    return space_from_dict(TINY_SPACE, "<tiny>")


# ------------------------------------------------------------------ the grid
@pytest.mark.parametrize("name", SPACE_NAMES)
def test_every_op_of_random_archs_is_covered_by_the_coarse_grid(name):
    space = load_space(space_path(name))
    groups = space_groups(space, channel_step=64)
    rng = random.Random(7)
    pools = 0
    for _ in range(40):
        arch = space.random_arch(rng)
        for op, _ in conv_op_counts(arch, space.resolution):
            assert covered(groups, op), op
        size = space.resolution
        for spec in arch.blocks:  # the shortcut pools the table also times
            ops, size = block_ops(spec, size)
            for op, _ in ops:
                assert covered(groups, op), op
                pools += op.kind == AVGPOOL
    assert pools > 0


def test_full_grid_contains_every_op_exactly():
    space = load_space(space_path("k1kx"))
    grid = set(space_grid(space))
    rng = random.Random(3)
    for _ in range(30):
        for op, _ in conv_op_counts(space.random_arch(rng), space.resolution):
            assert op in grid, op


def test_coarse_grid_keeps_range_ends_and_is_a_subset():
    space = load_space(space_path("kxkx"))
    full = set(space_grid(space))
    coarse = set(space_grid(space, channel_step=32))
    assert coarse <= full and len(coarse) < len(full) / 5
    full_groups, coarse_groups = space_groups(space), space_groups(space, channel_step=32)
    assert full_groups.keys() == coarse_groups.keys()
    for key, group in full_groups.items():
        assert min(group.in_values) == min(coarse_groups[key].in_values)
        assert max(group.out_values) == max(coarse_groups[key].out_values)


def test_op_outside_the_space_is_not_covered():
    space = load_space(space_path("k1kx"))
    groups = space_groups(space, channel_step=64)
    inside = conv_op_counts(space.initial, 320)[0][0]
    assert covered(groups, inside)
    assert not covered(groups, ConvOp("regular", 12, 4096, 3, 1, 320, 320))
    assert not covered(groups, ConvOp("regular", 12, 32, 5, 1, 320, 320))
    assert not covered(groups, ConvOp("regular", 12, 32, 3, 1, 300, 300))


# ------------------------------------------------------------------ interpolation
def synthetic_table(fn, cins, couts, sizes=(16, 32), batch=1, path="<synthetic>", drop=()):
    rows = []
    for h in sizes:
        for ci in cins:
            for co in couts:
                if (ci, co, h) in drop:
                    continue
                rows.append(["regular", ci, co, 3, 1, h, h, 0, 1, fn(ci, co, h), 0.0, 1])
    return LatencyTable(rows_frame(rows), base_meta("cpu", "fp32", batch), path)


def monotone(ci, co, h):
    return 0.01 + 1e-5 * (ci * co) ** 1.3 * h * h / 256 + 0.002 * np.sqrt(ci + co)


def test_interpolation_is_exact_on_grid_points():
    table = synthetic_table(monotone, [8, 16, 32, 64], [8, 24, 64])
    predictor = LatencyPredictor(table)
    for op, ms in table.latency_by_op().items():
        assert predictor.op_ms(op) == ms


def test_interpolation_is_monotone_between_grid_points():
    table = synthetic_table(monotone, [8, 16, 32, 64], [8, 24, 64], sizes=(16, 32))
    predictor = LatencyPredictor(table)
    for h in (16, 20, 24, 32):
        grid = np.array([[predictor.op_ms(ConvOp("regular", ci, co, 3, 1, h, h))
                          for co in range(8, 65, 4)] for ci in range(8, 65, 4)])
        assert (np.diff(grid, axis=0) >= 0).all() and (np.diff(grid, axis=1) >= 0).all()
    sizes = [predictor.op_ms(ConvOp("regular", 40, 40, 3, 1, h, h)) for h in range(16, 33)]
    assert (np.diff(sizes) > 0).all()


def test_interpolation_reproduces_a_bilinear_latency_between_points():
    def bilinear(ci, co, h):
        return 0.05 + 1e-4 * ci * co + 2e-3 * ci + 3e-3 * co
    predictor = LatencyPredictor(synthetic_table(bilinear, [8, 32, 64], [16, 48, 96], sizes=(16,)))
    for ci, co in [(12, 20), (40, 90), (63, 17)]:
        assert predictor.op_ms(ConvOp("regular", ci, co, 3, 1, 16, 16)) == pytest.approx(bilinear(ci, co, 16))


def test_scattered_points_are_exact_and_interpolated_inside_their_hull():
    drop = {(16, 24, 16), (32, 8, 16)}
    table = synthetic_table(monotone, [8, 16, 32, 64], [8, 24, 64], sizes=(16,), drop=drop)
    predictor = LatencyPredictor(table)
    for op, ms in table.latency_by_op().items():
        assert predictor.op_ms(op) == ms
    value = predictor.op_ms(ConvOp("regular", 16, 24, 3, 1, 16, 16))
    assert monotone(8, 8, 16) < value < monotone(64, 64, 16)


def test_ops_outside_the_table_raise_a_user_error_naming_table_and_op():
    predictor = LatencyPredictor(synthetic_table(monotone, [8, 64], [8, 64], path="chip.csv"))
    for op in (ConvOp("regular", 128, 8, 3, 1, 16, 16), ConvOp("regular", 8, 8, 3, 1, 64, 64),
               ConvOp("regular", 8, 8, 5, 1, 16, 16), ConvOp("depthwise", 8, 8, 3, 1, 16, 16, False, 8)):
        with pytest.raises(UserError) as err:
            predictor.op_ms(op)
        assert "chip.csv" in str(err.value) and f"k{op.kernel}" in str(err.value)


def test_predict_sums_blocks_scales_adds_overhead_and_divides_by_batch():
    arch = Arch((BlockSpec("ConvKXBNRELU", 3, 8, 1, 3),
                 BlockSpec("SuperResK1KX", 8, 16, 2, 3, depth=2, bottleneck=8)))
    rows, rng = [], random.Random(0)
    for spec, size in ((arch.blocks[0], 16), (arch.blocks[1], 16)):
        for op, _ in block_op_counts(spec, size)[0]:
            rows.append(op_row(op) + [rng.uniform(1, 2), 0.0, 1])
    meta = base_meta("cpu", "fp32", 4, scale=1.5, overhead_ms=2.0)
    table = LatencyTable(rows_frame(rows), meta)
    predictor = LatencyPredictor(table)
    ms = table.latency_by_op()
    raw = sum(ms[op] * n for op, n in conv_op_counts(arch, 16))
    assert predictor.predict_ms(arch, 16) == pytest.approx((1.5 * raw + 2.0) / 4)
    blocks = predictor.predict_blocks_ms(arch, 16)
    assert len(blocks) == 2 and sum(blocks) == pytest.approx(1.5 * raw / 4)
    assert predictor.predict_ms(arch, 16) == predictor.predict_ms(arch, 16)  # cached path agrees


# ------------------------------------------------------------------ import / export
TINYNAS_LINES = """\
{Regular,32,16,40,40,32,3,1,1} 0.5
{Regular,32,16,40,40,64,3,1,1} 0.9
{Regular,32,16,40,40,64,3,1,1} 1.1
{Regular,32,32,40,40,64,1,2,0} -1
{Depthwise,32,64,20,20,64,3,1,0} 0.25
{Regular,1,16,40,40,32,3,1,1} 0.05
"""


def test_import_round_trips_through_export(tmp_path):
    src = tmp_path / "conv_data.out.fp16"
    src.write_text(TINYNAS_LINES)
    with pytest.raises(UserError, match="mixes batch sizes"):
        import_tinynas(src)
    table = import_tinynas(src, tmp_path / "v.csv", batch=32)
    assert table.dtype == "fp16" and table.batch == 32 and len(table) == 3
    assert table.meta["import_stats"]["failed_dropped"] == 1
    assert table.meta["import_stats"]["duplicates_merged"] == 1
    assert table.meta["license"] == "Apache-2.0"
    ms = table.latency_by_op()
    assert ms[ConvOp("regular", 16, 64, 3, 1, 40, 40, True)] == pytest.approx(1.0)
    assert ms[ConvOp("depthwise", 64, 64, 3, 1, 20, 20, False, 64)] == pytest.approx(0.25)

    loaded = load_table(tmp_path / "v.csv", device="cuda:0", dtype="fp16")
    assert loaded.latency_by_op() == ms and loaded.meta == table.meta
    export_tinynas(loaded, tmp_path / "back.out")
    again = import_tinynas(tmp_path / "back.out", dtype="fp16")
    assert again.latency_by_op() == ms and again.batch == 32


def test_import_rejects_malformed_lines(tmp_path):
    src = tmp_path / "bad.out"
    src.write_text("{Regular,32,16,40,40,32,3,1,1} 0.5\n{Conv,1,2} 3\n")
    with pytest.raises(UserError, match="line 2"):
        import_tinynas(src)


# ------------------------------------------------------------------ corrupt tables
@pytest.fixture
def good_table(tmp_path):
    table = synthetic_table(monotone, [8, 16], [8, 16])
    path = tmp_path / "t.csv"
    save_table(table, path)
    return path


def rewrite(path, fn):
    frame = pd.read_csv(path)
    fn(frame).to_csv(path, index=False)


@pytest.mark.parametrize("corrupt, message", [
    (lambda f: f.drop(columns=["stride"]), "stride: missing column"),
    (lambda f: f.rename(columns={"latency_ms": "latency_us"}), "wrong units"),
    (lambda f: f.assign(latency_ms=["fast"] + list(f.latency_ms[1:])), "line 2.latency_ms"),
    (lambda f: f.assign(latency_ms=-f.latency_ms), "positive, finite number"),
    (lambda f: f.assign(kind="winograd"), "kind"),
    (lambda f: pd.concat([f, f.iloc[:1]]), "duplicate op"),
    (lambda f: f.assign(height=1.5), "expected an integer"),
])
def test_corrupt_rows_are_rejected(good_table, corrupt, message):
    rewrite(good_table, corrupt)
    with pytest.raises(UserError, match="modified or damaged"):
        load_table(good_table)
    with pytest.raises(UserError, match=message) as err:  # accepting an edit still checks every row
        rehash_table(good_table)
    assert str(good_table) in str(err.value)


@pytest.mark.parametrize("change, asked, message", [
    ({"units": "s"}, {}, "units"),
    ({"format": "other"}, {}, "format"),
    ({"batch": 0}, {}, "batch"),
    ({"status": "incomplete"}, {}, "did not finish"),
    ({}, {"device": "cuda"}, "measured on 'cpu'"),
    ({}, {"dtype": "fp16"}, "fp32"),
])
def test_mismatched_or_bad_sidecars_are_rejected(good_table, change, asked, message):
    side = sidecar_path(good_table)
    meta = json.loads(side.read_text())
    meta.update(change)
    side.write_text(json.dumps(meta))
    with pytest.raises(UserError, match=message):
        load_predictor(good_table, **asked)


def test_missing_sidecar_is_rejected(good_table):
    sidecar_path(good_table).unlink()
    with pytest.raises(UserError, match="sidecar"):
        load_table(good_table)


# ------------------------------------------------------------------ build and resume
def test_interrupted_build_resumes_where_it_stopped(tmp_path, monkeypatch):
    from tinynas.latency import build

    space, out = tiny_space(), tmp_path / "tiny.csv"
    grid = space_grid(space)
    first = build_table([space], out, warmup=1, runs=2, max_ops=3, progress=False)
    assert len(first) == 3 and first.meta["status"] == "incomplete"
    with pytest.raises(UserError, match="did not finish"):
        load_table(out)
    before = out.read_text()
    written = []

    def killed_mid_row(path, line):  # the second new row is cut off by a kill
        if written:
            with open(path, "a") as handle:
                handle.write(line[: len(line) // 2])
            raise KeyboardInterrupt
        written.append(line)
        append_row(path, line)

    monkeypatch.setattr(build, "append_row", killed_mid_row)
    with pytest.raises(KeyboardInterrupt):
        build_table([space], out, warmup=1, runs=2, progress=False)
    monkeypatch.undo()
    assert not out.read_text().endswith("\n")
    with pytest.raises(UserError, match="runs"):
        build_table([space], out, warmup=1, runs=3, progress=False)

    nominal = first.meta["calibration"]["nominal_ms"]
    with pytest.raises(UserError, match="calibrated"):
        build_table([space], out, warmup=1, runs=2, progress=False, calibrate=False)
    done = build_table([space], out, warmup=1, runs=2, progress=False)
    assert done.meta["status"] == "complete" and len(done) == len(grid)
    assert done.meta["calibration"]["nominal_ms"] == nominal  # the resumed rows are on the same scale
    assert out.read_text().startswith(before)  # measured rows kept as they were
    assert set(load_table(out).ops()) == set(grid)
    assert done.meta["threads"] == 1 and done.meta["batch"] == 1 and "device_name" in done.meta

    predictor = load_predictor(out, device="cpu", dtype="fp32")
    rng = random.Random(0)
    for _ in range(10):
        arch = space.random_arch(rng, steps=5)
        assert predictor.predict_ms(arch, 16) > 0


# ------------------------------------------------------------------ speed calibration
class DriftingMachine:
    """A virtual clock on a machine that slows down as it runs: work costs ms x slowness(now)."""

    def __init__(self, drift_per_s):
        self.now, self.drift = 0.0, drift_per_s

    def clock(self):
        return self.now

    def work(self, ms):
        self.now += ms * (1.0 + self.drift * self.now) / 1e3


def test_calibrated_runs_cancel_the_machine_speed_of_the_moment():
    from tinynas.latency.calibrate import SpeedReference

    steady = DriftingMachine(0.0)
    ref = SpeedReference(torch.device("cpu"), torch.float32, steady.clock, nominal_ms=5.0)
    ref.conv = lambda x: steady.work(7.5)  # the machine runs at 2/3 of its nominal speed now
    assert ref.timed_runs(lambda: steady.work(6.0), 20) == pytest.approx([4.0] * 20)

    drifting = DriftingMachine(2.0)  # 2x slower after half a second
    ref = SpeedReference(torch.device("cpu"), torch.float32, drifting.clock, nominal_ms=5.0)
    ref.conv = lambda x: drifting.work(5.0)
    raw = []

    def network():
        start = drifting.now
        drifting.work(60.0)
        raw.append((drifting.now - start) * 1e3)

    calibrated = np.array(ref.timed_runs(network, 8))
    assert raw[-1] > 1.5 * raw[0]  # what the clock alone reports drifts by half
    # The reference keeps the least disturbed (here: earliest) of its 3 runs, so it reads a
    # little fast; the drift itself is gone: every run reads the same.
    assert np.abs(calibrated / 60.0 - 1).max() < 0.05
    assert calibrated.max() / calibrated.min() < 1.005
    assert ref.record()["nominal_ms"] == 5.0


def test_validate_times_networks_on_the_tables_nominal_speed(tmp_path, monkeypatch):
    from tinynas.latency import measure

    seen = {}
    real_setup = measure.setup_device

    def spy(*args, **kwargs):
        setup = real_setup(*args, **kwargs)
        seen["nominal"] = setup.reference.nominal_ms if setup.reference else None
        return setup

    space, out = tiny_space(), tmp_path / "tiny.csv"
    table = build_table([space], out, warmup=1, runs=2, progress=False)
    monkeypatch.setattr(measure, "setup_device", spy)
    validate_table(out, space, n=3, resolution=16, warmup=1, runs=2, progress=False, rounds=1)
    assert seen["nominal"] == table.meta["calibration"]["nominal_ms"]
    assert read_meta(out)["validation"]["calibrated"] is True


# ------------------------------------------------------------------ fitting the overhead
def test_fit_recovers_scale_and_overhead_and_leave_one_out_predicts_unseen():
    raw = np.linspace(5, 50, 12)
    measured = 1.2 * raw + 3.0
    scale, offset = fit_correction(raw, measured, "affine")
    assert scale == pytest.approx(1.2) and offset == pytest.approx(3.0)
    assert leave_one_out(raw, measured, "affine") == pytest.approx(measured)
    assert fit_correction(raw, raw + 2.0, "offset") == pytest.approx((1.0, 2.0))
    assert fit_correction(raw, measured, "none") == (1.0, 0.0)


def test_tables_with_pool_rows_price_the_stride2_shortcut_pool():
    arch = Arch((BlockSpec("ConvKXBNRELU", 3, 8, 1, 3),
                 BlockSpec("SuperResK1KX", 8, 16, 2, 3, depth=1, bottleneck=8)))
    ops = [op for spec, size in ((arch.blocks[0], 16), (arch.blocks[1], 16))
           for op, _ in block_ops(spec, size)[0]]
    pool = ConvOp(AVGPOOL, 8, 8, 2, 2, 16, 16, False, 8)
    assert pool in ops
    rows = [op_row(op) + [1.0 + i, 0.0, 1] for i, op in enumerate(ops)]
    with_pool = LatencyPredictor(LatencyTable(rows_frame(rows), base_meta("cpu", "fp32", 1)))
    convs_only = [r for r, op in zip(rows, ops) if op != pool]
    without = LatencyPredictor(LatencyTable(rows_frame(convs_only), base_meta("cpu", "fp32", 1)))
    assert with_pool.predict_ms(arch, 16) == pytest.approx(without.predict_ms(arch, 16) + with_pool.op_ms(pool))


def test_predictor_pickles_with_its_cache_for_search_workers():
    import pickle
    drop = {(16, 24, 16)}
    table = synthetic_table(monotone, [8, 16, 32, 64], [8, 24, 64], sizes=(16, 32), drop=drop)
    predictor = LatencyPredictor(table)
    seen = ConvOp("regular", 20, 30, 3, 1, 24, 24)
    value = predictor.op_ms(seen)
    clone = pickle.loads(pickle.dumps(predictor))
    assert clone.op_ms(seen) == value and seen in clone._op_cache
    unseen = ConvOp("regular", 40, 50, 3, 1, 20, 20)
    assert clone.op_ms(unseen) == predictor.op_ms(unseen)
