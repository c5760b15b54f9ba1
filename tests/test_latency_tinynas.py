"""``extrapolation: tinynas``: imported TinyNAS tables price ops as TinyNAS's own OpPredictor.

Every pinned number below was produced by TinyNAS itself (alibaba/lightweight-neural-
architecture-search, Apache-2.0, tinynas/latency/op_profiler/predictor.py run unmodified on
its own V100 files, conv_data.out*), at batch 32: ``OpPredictor(device_name="V100",
data_type=..., batch_size=32, image_size=320)`` for networks, ``OpProfiler(...)([op], [0], 32)``
for single ops. The four DAMO-YOLO figures are also the ones the project's reference notes
quote for that predictor.
"""

import json

import pytest

from conftest import ROOT, arch_path
from tinynas.arch import arch_from_dicts
from tinynas.archio import load_arch
from tinynas.cli import main
from tinynas.errors import UserError
from tinynas.latency import LatencyPredictor, LatencyTable, import_tinynas, load_predictor, load_table
from tinynas.latency.interpolate import tinynas_ratio
from tinynas.latency.table import base_meta, read_meta, rows_frame
from tinynas.ops import ConvOp
from tinynas.search.judge import Evaluator
from tinynas.search.search_recipe import load_recipe, recipe_space, resolve_latency_path

DB = ROOT / "latency_db"
R, D = "regular", "depthwise"

# TinyNAS's OpPredictor, data_type FP16_DAMOYOLO, batch 32, image 320, on DAMO-YOLO's published
# backbones with the stem reading 12 channels (the Focus stem's view): seconds per image.
TINYNAS_DAMOYOLO_S = {"t": 8.377778199535296e-05, "s": 1.1995575237058086e-04,
                      "m": 4.003728373511905e-04, "l": 7.048172063988092e-04}
ACCEPT = 1e-3  # the acceptance bound; the T and S sums agree to about 1e-15


def backbone(name):
    arch = load_arch(arch_path(f"damoyolo-{name}"))
    return arch.with_block(0, arch.blocks[0].replace(in_channels=12))


def with_rule(table, rule):
    return LatencyPredictor(LatencyTable(table.rows, {**table.meta, "extrapolation": rule}, table.path))


# ------------------------------------------------------------------ the shipped tables
@pytest.mark.parametrize("name", ["t", "s", "m", "l"])
def test_damoyolo_backbones_cost_what_tinynas_predicts(name):
    predictor = load_predictor("v100-trt-fp16-damoyolo")
    assert predictor.extrapolation == "tinynas"
    seconds = predictor.predict_ms(backbone(name), 320) * 1e-3
    assert seconds == pytest.approx(TINYNAS_DAMOYOLO_S[name], rel=ACCEPT)
    assert not predictor.extrapolated  # the nearest-op note is for the other rules only


@pytest.mark.parametrize("name", ["t", "s", "m", "l"])
def test_predict_command_prints_tinynas_figures(name, capsys):
    code = main(["latency", "predict", f"damoyolo-{name}", "--latency-db", "v100-trt-fp16-damoyolo",
                 "--in-channels", "12"])
    out = capsys.readouterr().out
    assert code == 0 and f"({TINYNAS_DAMOYOLO_S[name]:.3e} s)" in out


# The regular convs TinyNAS lists for M and L (CnnNet.get_params_for_trt(320), stem reading 12
# channels): (C_in, C_out, kernel, stride, H, fused, count). Priced one by one and summed, they
# give TinyNAS's figures: the predictor is exact; only the op list of layout.py differs.
TINYNAS_KXKX_OPS = {
    "m": [(12, 32, 3, 1, 320, 0, 1), (32, 64, 3, 1, 320, 0, 1), (64, 128, 3, 2, 320, 1, 1),
          (32, 128, 1, 1, 160, 0, 1), (128, 64, 3, 1, 160, 0, 2), (64, 128, 3, 1, 160, 1, 1),
          (64, 128, 3, 2, 160, 1, 1), (128, 64, 3, 1, 80, 0, 3), (64, 128, 3, 1, 80, 1, 3),
          (128, 256, 3, 1, 80, 0, 1), (256, 256, 3, 2, 80, 1, 1), (128, 256, 1, 1, 40, 0, 1),
          (256, 256, 3, 1, 40, 0, 8), (256, 256, 3, 1, 40, 1, 7), (256, 512, 3, 2, 40, 1, 1),
          (256, 512, 1, 1, 20, 0, 1), (512, 256, 3, 1, 20, 0, 2), (256, 512, 3, 1, 20, 1, 2)],
    "l": [(12, 32, 3, 1, 320, 0, 1), (32, 96, 3, 1, 320, 0, 1), (96, 128, 3, 2, 320, 1, 1),
          (32, 128, 1, 1, 160, 0, 1), (128, 96, 3, 1, 160, 0, 3), (96, 128, 3, 1, 160, 1, 2),
          (96, 128, 3, 2, 160, 1, 1), (128, 96, 3, 1, 80, 0, 4), (96, 128, 3, 1, 80, 1, 4),
          (128, 384, 3, 1, 80, 0, 1), (384, 256, 3, 2, 80, 1, 1), (128, 256, 1, 1, 40, 0, 1),
          (256, 384, 3, 1, 40, 0, 10), (384, 256, 3, 1, 40, 1, 9), (384, 512, 3, 2, 40, 1, 1),
          (256, 512, 1, 1, 20, 0, 1), (512, 384, 3, 1, 20, 0, 3), (384, 512, 3, 1, 20, 1, 3)],
}


@pytest.mark.parametrize("name", ["m", "l"])
def test_kxkx_backbones_cost_what_tinynas_predicts_on_its_op_lists(name):
    predictor = load_predictor("v100-trt-fp16-damoyolo")
    total = sum(predictor.op_ms(ConvOp(R, cin, cout, k, s, h, h, bool(fused))) * n
                for cin, cout, k, s, h, fused, n in TINYNAS_KXKX_OPS[name])
    assert total / predictor.batch * 1e-3 == pytest.approx(TINYNAS_DAMOYOLO_S[name], rel=1e-9)


# One op at a time: (table, kind, C_in, C_out, kernel, stride, H, fused) -> ms for the batch.
TINYNAS_OPS = [
    # C_in/C_out 0.375 lies between the sampled ratios 0.25 and 0.5
    ("v100-trt-fp16-damoyolo", (R, 12, 32, 3, 1, 320, 0), 0.173099),
    # C_in 3 reads its own ratio-0 surface
    ("v100-trt-fp16-damoyolo", (R, 3, 32, 3, 1, 320, 0), 0.111404),
    # a sampled ratio (0.5) is read directly, C_out 256 at size 80 interpolated on its surface
    ("v100-trt-fp16-damoyolo", (R, 128, 256, 1, 1, 80, 0), 0.1104572857142857),
    # ratio 1.45: interpolated across ratios
    ("v100-trt-fp16-damoyolo", (R, 128, 88, 1, 1, 80, 0), 0.06643865097402599),
    # ratio 128 and 0.008: extrapolated past either end of the sampled ratios
    ("v100-trt-fp16-damoyolo", (R, 1024, 8, 3, 2, 40, 1), 0.7587573000000001),
    ("v100-trt-fp16-damoyolo", (R, 8, 1000, 3, 1, 40, 1), 0.20139123200000003),
    # C_out 4096 lies outside every surface: the nearest point in rescaled (C_out, H)
    ("v100-trt-fp16-damoyolo", (R, 256, 4096, 1, 1, 20, 0), 0.04300887500000001),
    ("v100-trt-fp16", (D, 200, 200, 3, 1, 28, 0), 0.044603733333333326),
    ("v100-trt-fp16", (D, 96, 96, 5, 2, 112, 0), 0.37114546666666665),
    ("v100-trt-fp16", (R, 96, 24, 1, 1, 56, 0), 0.051609600000000005),
    # size 20, where the DAMO-YOLO file's repeated size-6 lines change the triangulation
    ("v100-trt-fp16-damoyolo", (R, 20, 653, 3, 1, 20, 0), 0.06870967993874426),
    ("v100-trt-fp16-damoyolo", (R, 341, 682, 3, 1, 20, 1), 0.254449),
    # a measured op at size 4 (0.0243712 in its row): TinyNAS drops those rows and interpolates
    ("v100-trt-fp32", (R, 64, 64, 3, 1, 4, 0), 0.0246784),
]


@pytest.mark.parametrize("table,op,expected", TINYNAS_OPS)
def test_single_ops_cost_what_tinynas_predicts(table, op, expected):
    kind, cin, cout, k, s, h, fused = op
    predictor = load_predictor(table)
    value = predictor.op_ms(ConvOp(kind, cin, cout, k, s, h, h, bool(fused), cin if kind == D else 1))
    assert value == pytest.approx(expected, rel=1e-9)


# ------------------------------------------------------------------ the S budget, as TinyNAS judged it
def k1kx(*blocks):
    stem = {"class": "ConvKXBNRELU", "in": 12, "out": blocks[0], "s": 1, "k": 3}
    return arch_from_dicts([stem] + [{"class": "SuperResK1KX", "in": i, "out": o, "s": s, "k": 3, "L": n, "btn": b}
                                     for i, o, s, n, b in blocks[1:]])


S_BUDGET_CASES = [
    # the best of a 100,000-candidate run of recipes/search/damoyolo-s.yaml (seed 0): within
    (k1kx(32, (32, 96, 2, 1, 24), (96, 96, 2, 1, 96), (96, 256, 2, 1, 128), (256, 256, 1, 5, 144),
          (256, 512, 2, 4, 192)), 1.1963437279265872e-04),
    # over 12e-5 for TinyNAS (the nearest-point rule priced it at 1.163e-4, within)
    (k1kx(16, (16, 64, 2, 2, 24), (64, 64, 2, 1, 64), (64, 96, 2, 7, 48), (96, 256, 1, 4, 256),
          (256, 256, 2, 1, 56)), 1.2064730112847221e-04),
    # within for TinyNAS (the nearest-point rule priced it at 1.206e-4, over)
    (k1kx(16, (16, 48, 2, 2, 8), (48, 64, 2, 1, 8), (64, 64, 2, 5, 8), (64, 160, 1, 8, 64),
          (160, 368, 2, 4, 208)), 1.193986612269196e-04),
]


@pytest.mark.parametrize("arch,tinynas_s", S_BUDGET_CASES)
def test_the_s_recipe_judges_the_latency_budget_as_tinynas(arch, tinynas_s):
    recipe = load_recipe(ROOT / "recipes" / "search" / "damoyolo-s.yaml")
    (latency,) = [b for b in recipe["budgets"] if b.kind == "latency"]
    evaluator = Evaluator(resolution=recipe_space(recipe, None).resolution, rungs=(recipe["budgets"],),
                          latency=str(resolve_latency_path(recipe["latency_db"])))
    ms = evaluator.evaluate_values(arch)["latency"]
    assert ms * 1e-3 == pytest.approx(tinynas_s, rel=1e-9)
    # TinyNAS's ExceedBudget: over when budget < latency, the budget in seconds.
    assert latency.allows(ms) == (not 12e-5 < tinynas_s)


@pytest.mark.parametrize("name", ["t", "s", "m"])
def test_damoyolo_search_recipes_use_a_table_priced_by_tinynas_rule(name):
    recipe = load_recipe(ROOT / "recipes" / "search" / f"damoyolo-{name}.yaml")
    assert read_meta(resolve_latency_path(recipe["latency_db"]))["extrapolation"] == "tinynas"


@pytest.mark.parametrize("name", ["v100-trt-fp16-damoyolo", "v100-trt-fp16", "v100-trt-fp32"])
def test_imported_tables_ship_with_tinynas_rule_and_their_hash(name):
    table = load_table(DB / f"{name}.csv")  # the loader checks the sidecar's sha256 of the CSV
    assert table.meta["extrapolation"] == "tinynas" and "import_stats" in table.meta


# ------------------------------------------------------------------ the rule, by hand
def synthetic(rows, repeats=False):
    """A table at batch 1 priced by TinyNAS's rule; rows (kind, in, out, k, s, H, ms[, runs])."""
    records = [[kind, cin, cout, k, s, h, h, 0, cin if kind == D else 1, ms, 0.0, runs[0] if runs else 1]
               for kind, cin, cout, k, s, h, ms, *runs in rows]
    meta = base_meta("cuda", "fp16", 1, extrapolation="tinynas")
    if repeats:
        meta["import_stats"] = {}
    return LatencyPredictor(LatencyTable(rows_frame(records), meta, "<synthetic>"))


def ratio_rows(ratio_values, kernel=1, couts=(8, 16), sizes=(8, 16)):
    """Rows whose latency is ``value(ratio) + C_out / 100``: linear in (C_out, H), so every
    triangulation reproduces it inside the hull and only the ratio rule is under test."""
    return [(R, int(r * c), c, kernel, 1, h, v + c / 100) for r, v in ratio_values.items()
            for c in couts for h in sizes]


def test_ratios_are_read_interpolated_extrapolated_and_kept_rising():
    # Ratio 2 (2.0) does not rise above ratio 1 (3.0): TinyNAS leaves it out of the 1-D fit.
    rows = ratio_rows({0.5: 1.0, 1: 3.0, 2: 2.0, 4: 6.0})
    rows += [(R, 3, c, 1, 1, h, 0.5) for c in (8, 16) for h in (8, 16)]
    p = synthetic(rows)

    def ms(cin, cout=16, h=12):
        return p.op_ms(ConvOp(R, cin, cout, 1, 1, h, h))

    assert ms(16) == pytest.approx(3.16)              # ratio 1: its own surface
    assert ms(32) == pytest.approx(2.16)              # ratio 2 read directly, though left out of the fit
    assert ms(24) == pytest.approx(3.5 + 0.16)        # 1.5: between 1 and 4 (3 + 3 * 0.5 / 3)
    assert ms(96) == pytest.approx(8.0 + 0.16)        # 6: past 4, on the line through 1 and 4
    assert ms(4, 8) == pytest.approx(1.0 + 0.08)      # 0.5 again, at C_out 8
    # 0.125: the line through 0.5 and 1 goes negative (1.16 - 1.5); TinyNAS then scales the
    # first kept ratio's latency by the ratio: 0.125 / 0.5 * 1.16
    assert ms(2) == pytest.approx(0.125 / 0.5 * 1.16)
    assert ms(3) == pytest.approx(0.5)                # C_in 3: the ratio-0 surface, not 0.1875
    # C_out 64 is outside every surface: the nearest point, (16, 16) in rescaled axes
    assert ms(64, 64, 14) == pytest.approx(3.16)
    assert not p.extrapolated


def test_ratios_are_cut_to_two_decimals_and_measured_ops_are_not_read_from_their_row():
    assert tinynas_ratio(29, 100) == 0.28 and tinynas_ratio(3, 64) == 0.0 and tinynas_ratio(1, 3) == 0.33
    rows = [(R, 29 * c // 100, c, 3, 1, h, 2.0) for c in (100, 200) for h in (8, 16)]
    rows += [(R, c, c, 3, 1, h, 4.0) for c in (100, 200) for h in (8, 16)]
    measured = ConvOp(R, 29, 100, 3, 1, 8, 8)
    # filed under 0.28, priced at 0.29 between 0.28 and 1: 2 + 2 * 0.01 / 0.72, not its own 2.0
    assert synthetic(rows).op_ms(measured) == pytest.approx(2 + 2 * 0.01 / 0.72)
    table = synthetic(rows).table
    assert with_rule(table, "nearest").op_ms(measured) == 2.0


def test_size_4_rows_are_left_out_as_tinynas_reader_leaves_them():
    rows = [(D, c, c, 3, 1, h, c / 100 + h / 1000) for c in (8, 16) for h in (8, 16)]
    p = synthetic(rows + [(D, c, c, 3, 1, 4, 100.0) for c in (8, 16)])
    assert p.op_ms(ConvOp(D, 12, 12, 3, 1, 12, 12, False, 12)) == pytest.approx(0.132)
    # size 6 lies outside what is left (8..16): the nearest point, not a blend with the 100 ms rows
    assert p.op_ms(ConvOp(D, 16, 16, 3, 1, 6, 6, False, 16)) == pytest.approx(0.168)


def test_repeated_lines_weigh_in_as_tinynas_kept_them():
    # The DAMO-YOLO file measured size 6 twice; TinyNAS triangulates with both copies, and
    # that moves the diagonals Qhull takes as far away as size 20 (see TINYNAS_OPS).
    table = load_table("v100-trt-fp16-damoyolo")
    op = ConvOp(R, 20, 653, 3, 1, 20, 20)
    assert LatencyPredictor(table).op_ms(op) == pytest.approx(0.06870967993874426, rel=1e-9)
    once = {k: v for k, v in table.meta.items() if k != "import_stats"}
    assert LatencyPredictor(LatencyTable(table.rows, once, table.path)).op_ms(op) == pytest.approx(0.0616, abs=1e-4)
    # In a built table runs counts timed runs, not lines: no point goes in twice.
    rows = ratio_rows({0.5: 1.0, 1: 3.0})
    assert (synthetic([row + (10,) for row in rows]).op_ms(ConvOp(R, 12, 12, 1, 1, 10, 10))
            == synthetic(rows).op_ms(ConvOp(R, 12, 12, 1, 1, 10, 10)))


def test_ops_the_rule_cannot_price_are_one_line_errors():
    p = synthetic(ratio_rows({0.5: 1.0, 1: 2.0}))
    with pytest.raises(UserError, match=r"regular k3 s1 16->16 @12x12.*no op of this kind"):
        p.op_ms(ConvOp(R, 16, 16, 3, 1, 12, 12))
    with pytest.raises(UserError, match="only regular and depthwise"):
        p.op_ms(ConvOp(R, 16, 16, 1, 1, 12, 12, False, 2))
    with pytest.raises(UserError, match="reading 3 channels"):
        p.op_ms(ConvOp(R, 3, 16, 1, 1, 12, 12))
    one = synthetic(ratio_rows({1: 2.0}))
    with pytest.raises(UserError, match="two sampled C_in/C_out ratios"):
        one.op_ms(ConvOp(R, 24, 16, 1, 1, 12, 12))


def test_predictor_pickles_and_rebuilds_the_rule():
    import pickle
    p = load_predictor("v100-trt-fp16-damoyolo")
    arch = backbone("s")
    before = p.predict_ms(arch, 320)
    again = pickle.loads(pickle.dumps(p))
    assert again._rule is None and again.predict_ms(arch, 320) == before
    assert again.op_ms(ConvOp(R, 120, 88, 1, 1, 80, 80)) == p.op_ms(ConvOp(R, 120, 88, 1, 1, 80, 80))


# ------------------------------------------------------------------ import default
def test_import_defaults_to_tinynas_rule(tmp_path, capsys):
    src = tmp_path / "conv_data.out"
    src.write_text("{Regular,8,16,40,40,32,3,1,1} 0.5\n{Regular,8,16,40,40,64,3,1,1} 0.9\n")
    assert import_tinynas(src).meta["extrapolation"] == "tinynas"
    assert import_tinynas(src, extrapolation="nearest").meta["extrapolation"] == "nearest"
    assert main(["latency", "import-tinynas", str(src), "--out", str(tmp_path / "x.csv")]) == 0
    assert json.loads((tmp_path / "x.json").read_text())["extrapolation"] == "tinynas"
    with pytest.raises(UserError, match="expected one of none, nearest, tinynas"):
        import_tinynas(src, extrapolation="linear")
