"""Preflight: a job that will need an optional package refuses at once, in one line naming every
missing package and the install line, before any stage runs or any file is written."""

import sys

import yaml

from tinynas.cli import main
from tinynas.data.synthetic import make_synthetic_dataset
from tinynas.preflight import design_packages, install_line, missing_packages, table_build_packages


def _without(monkeypatch, *packages):
    # What an environment without them looks like to the import system (and to find_spec).
    for name in packages:
        monkeypatch.setitem(sys.modules, name, None)


def test_missing_packages_are_found_without_importing_them(monkeypatch):
    assert missing_packages(["json", "tinynas_no_such_package", "json"]) == ["tinynas_no_such_package"]
    _without(monkeypatch, "onnxscript")
    assert missing_packages(["onnx", "onnxscript"]) == ["onnxscript"]
    assert install_line(["onnxscript", "openvino", "onnx"]) == 'pip install -e ".[export,openvino]"'
    assert install_line(["ray"]) == 'pip install -e ".[ray]"'


def test_a_design_without_the_exporter_is_refused_before_its_search(tmp_path, monkeypatch, capsys):
    make_synthetic_dataset(tmp_path / "data", images=4, val_images=2, size=64, seed=0)
    data_yaml = tmp_path / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({
        "train_images": "data/images/train", "train_annotations": "data/annotations/train.json",
        "val_images": "data/images/val", "val_annotations": "data/annotations/val.json"}))
    _without(monkeypatch, "onnxscript", "onnxruntime")
    out = tmp_path / "design"
    code = main(["design", str(data_yaml), "--budget", "latency=40ms", "--runtime", "ONNXRuntime", "--out", str(out),
                 "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.strip() == ('tinynas: error: design: dependencies: a design deployed in onnxruntime (ONNX export, '
                           'then timing) needs onnxscript, onnxruntime, not installed here: pip install -e ".[export]"')
    assert not out.exists()


def test_a_runtime_table_build_names_every_missing_package_and_writes_nothing(tmp_path, monkeypatch, capsys):
    _without(monkeypatch, "openvino", "onnx")
    table = tmp_path / "t.csv"
    code = main(["latency", "build", "--space", "k1kx", "--runtime", "openvino", "--channel-step", "256",
                 "--out", str(table)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.strip() == ('tinynas: error: latency build: dependencies: a table timed in openvino needs onnx, '
                           'openvino, not installed here: pip install -e ".[export,openvino]"')
    assert list(tmp_path.iterdir()) == []
    assert table_build_packages("torch") == () and design_packages("torch") == ("onnx", "onnxscript")
