"""Whole-detector latency: every convolution of the fused detector, priced and timed."""

import pytest
import torch
from torch import nn

from test_detect_io import tiny_recipe_doc
from tinynas.cli import main
from tinynas.detect import build_detector, parse_model_recipe
from tinynas.detect.conv_ops import detector_op_counts
from tinynas.errors import UserError
from tinynas.latency import build_table, load_predictor
from tinynas.latency.validate_models import validate_models


def tiny(name="tiny", wrap="res", **neck):
    doc = tiny_recipe_doc(3, wrap)
    doc["name"] = name
    doc["neck"].update(neck)
    return parse_model_recipe(doc, name)


@pytest.mark.parametrize("wrap", ["res", "csp"])
def test_the_op_list_is_every_conv_the_fused_detector_runs(wrap):
    recipe = tiny(wrap=wrap)
    ops = detector_op_counts(recipe, 64)
    model = build_detector(recipe)
    model.fuse()
    model.eval()
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((m.in_channels, m.out_channels, m.kernel_size[0],
                                                                   m.stride[0], i[0].shape[-1])))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model.head(model.features(torch.zeros(1, 3, 64, 64)))
    for hook in hooks:
        hook.remove()
    assert sum(count for _, count in ops) == len(seen)
    assert sorted((op.in_channels, op.out_channels, op.kernel, op.stride, op.width)
                  for op, count in ops for _ in range(count)) == sorted(seen)
    assert all(op.height == op.width for op, _ in ops)


def test_residual_units_time_their_last_conv_with_the_add():
    ops = dict(detector_op_counts(tiny(), 64))
    fused = [op for op in ops if op.fused_residual]
    # TINY_ARCH's stride-1 units: the second unit of block 2 (L=2); stride-2 units have no shortcut.
    assert len(fused) == 1 and fused[0].stride == 1 and fused[0].in_channels == 8


def test_a_size_the_detector_cannot_take_is_refused():
    with pytest.raises(UserError, match="multiple of 32"):
        detector_op_counts(tiny(), 48)


def test_build_with_models_then_predict_and_validate_whole_detectors(tmp_path, capsys):
    small, wide = tiny("small"), tiny("wide", out_channels=[16, 24, 32])
    table = tmp_path / "det.csv"
    built = build_table([], table, models=[small, wide], model_size=64, runs=3, warmup=1, progress=False)
    assert built.meta["status"] == "complete" and built.meta["builds"][-1]["models"] == ["small@64", "wide@64"]
    predictor = load_predictor(table)
    ops = detector_op_counts(wide, 64)
    assert len(built) == len({op for op, _ in ops} | {op for op, _ in detector_op_counts(small, 64)})
    by_hand = sum(predictor.op_ms(op) * count for op, count in ops)
    assert predictor.predict_ops_ms(ops) == pytest.approx(by_hand * predictor.scale + predictor.overhead_ms)
    # every op of both detectors was timed: each prices from its own row, none interpolated
    assert all(predictor.op_ms(op) == predictor.table.latency_by_op()[op] for op, _ in ops)

    result = validate_models(table, [small, wide], 64, runs=3, rounds=1, progress=False)
    assert result.names == ["small", "wide"] and (result.measured_ms > 0).all()
    assert result.raw_ms == pytest.approx([predictor.ops_raw_ms(detector_op_counts(r, 64)) for r in (small, wide)])

    recipe_file = tmp_path / "wide.yaml"
    import yaml
    doc = tiny_recipe_doc(3)
    doc["name"] = "wide"
    doc["neck"]["out_channels"] = [16, 24, 32]
    recipe_file.write_text(yaml.safe_dump(doc))
    assert main(["latency", "predict", str(recipe_file), "--detector", "--latency-db", str(table), "--size", "64"]) == 0
    by_size = capsys.readouterr().out
    assert "convolutions" in by_size and "at 3x64x64" in by_size
    # resolution, which named the image side here before size did, still does
    assert main(["latency", "predict", str(recipe_file), "--detector", "--latency-db", str(table), "--resolution", "64"]) == 0
    assert capsys.readouterr().out == by_size
    # the backbone-only grid of a space does not hold a detector's neck: one line naming an op
    code = main(["latency", "predict", "damoyolo-t", "--detector", "--latency-db", str(table), "--resolution", "320"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "outside the table's grid" in err
