"""Quantization-aware training: the simulation uses onnxruntime's grids, a run fine-tunes a float
checkpoint with its own float self as the teacher, resumes exactly, and exports to an int8 file
whose outputs are the simulation's."""

import numpy as np
import pytest
import torch
import yaml

from tinynas.api import export_checkpoint
from tinynas.checkpoint import load_checkpoint
from tinynas.cli import main
from tinynas.deploy.quantize import calibration_images, calibration_inputs
from tinynas.nn.fake_quant import activation_grid, fake_quantize_weight, set_fake_quant
from tinynas.train.recipe import parse_train_recipe
from tinynas.train.trainer import train

from train_helpers import synthetic, tiny_recipe

ort = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("form", ["uint8", "int8"])
@pytest.mark.parametrize("low,high", [(-1.5, 3.25), (0.0, 6.0), (-0.2, -0.1), (0.3, 0.9), (-7.0, 0.0)])
def test_the_activation_grid_is_onnxruntimes(form, low, high):
    from onnxruntime.quantization.quant_utils import compute_scale_zp

    qmin, qmax = (np.array(0, np.uint8), np.array(255, np.uint8)) if form == "uint8" else \
        (np.array(-127, np.int8), np.array(127, np.int8))
    zero, scale = compute_scale_zp(np.array(low, np.float32), np.array(high, np.float32), qmin, qmax,
                                   symmetric=form == "int8")
    ours = activation_grid(low, high, form)
    assert ours[0] == pytest.approx(float(scale), rel=1e-6) and ours[1] == int(zero)
    assert (ours[2], ours[3]) == (int(qmin), int(qmax))


def test_weights_are_rounded_per_channel_to_127_levels_each_side():
    weight = torch.randn(4, 3, 3, 3) * torch.tensor([0.01, 1.0, 5.0, 100.0]).view(-1, 1, 1, 1)
    quantized = fake_quantize_weight(weight)
    scale = weight.abs().amax(dim=(1, 2, 3)) / 127
    steps = quantized / scale.view(-1, 1, 1, 1)
    torch.testing.assert_close(steps, steps.round(), atol=1e-3, rtol=0)
    assert steps.abs().amax(dim=(1, 2, 3)).round().tolist() == [127.0] * 4
    assert ((quantized - weight).abs() <= scale.view(-1, 1, 1, 1) / 2 + 1e-6).all()


@pytest.fixture(scope="module")
def floated(tmp_path_factory):
    root = tmp_path_factory.mktemp("qat")
    data = synthetic(root / "data", images=16, val_images=4, size=96, seed=6)
    train(parse_train_recipe(tiny_recipe(data, root / "float", 96, epochs=2, batch_size=8)), progress=False)
    return data, root


def _qat_recipe(data, root, name):
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(data, root / name, 96, epochs=2, batch_size=8)))
    return path


def test_qat_fine_tunes_resumes_and_exports_what_it_simulated(floated, tmp_path, capsys):
    data, root = floated
    teacher = str(root / "float" / "last.pt")
    whole = _qat_recipe(data, tmp_path, "whole")
    assert main(["train", str(whole), "quant.qat=true", "--teacher", teacher, "--quiet"]) == 0
    parts = _qat_recipe(data, tmp_path, "parts")
    assert main(["train", str(parts), "quant.qat=true", "--teacher", teacher, "--quiet", "--stop-after", "1"]) == 0
    assert main(["train", "--resume", str(tmp_path / "parts"), "--quiet"]) == 0
    a, b = load_checkpoint(tmp_path / "whole" / "last.pt"), load_checkpoint(tmp_path / "parts" / "last.pt")
    assert a.qat == b.qat == "uint8" and a.fused
    assert any(k.endswith("input_range") for k in a.state_dict)
    for key, value in a.state_dict.items():
        torch.testing.assert_close(b.state_dict[key], value, msg=key)
    recorded = yaml.safe_load((tmp_path / "whole" / "recipe.yaml").read_text())
    assert recorded["train"]["init"] == teacher and recorded["quant"]["qat"] is True
    capsys.readouterr()

    int8, float32 = tmp_path / "q.onnx", tmp_path / "f.onnx"
    assert main(["export", "--weights", str(tmp_path / "whole" / "last.pt"), "--out", str(int8), "--int8",
                 "--calib", str(data.train_images), "calib_images=4"]) == 0
    export_checkpoint(tmp_path / "whole" / "last.pt", float32)
    simulated = a.build()
    plain = set_fake_quant(a.build(), False)
    inputs = calibration_inputs(calibration_images(data.val_images, 3), 96)
    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (int8, float32)]
    far = near = 0.0
    for x in inputs:
        q, f = (s.run(None, {"images": x}) for s in sessions)
        with torch.no_grad():
            sim = simulated(torch.from_numpy(x))
            ref = plain(torch.from_numpy(x))
        assert np.abs(f[0] - ref[0].numpy()).max() < 1e-5  # the float export is the float convs
        near += float(np.abs(q[0] - sim[0].numpy()).mean())
        far += float(np.abs(q[0] - f[0]).mean())
    # The int8 file's scores are the simulation's, not the float model's.
    assert near < far / 20


def test_qat_refusals(floated, tmp_path, capsys):
    data, root = floated
    plain = _qat_recipe(data, tmp_path, "r")
    assert main(["train", str(plain), "quant.qat=true", "--quiet"]) == 2
    assert "quant.qat" in capsys.readouterr().err
    assert main(["train", str(plain), "quant.qat=true", "train.rep_form=scaled", "--quiet"]) == 2
    assert "hyper-search" in capsys.readouterr().err
    assert main(["train", str(plain), "quant.qat=true", "quant.activations=int8", f"train.init={root / 'float' / 'last.pt'}",
                 "train.epochs=1", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["export", "--weights", str(tmp_path / "r" / "last.pt"), "--out", str(tmp_path / "x.onnx"), "--int8",
                 "--calib", str(data.train_images), "calib_images=2"]) == 2
    assert "--activations int8" in capsys.readouterr().err
