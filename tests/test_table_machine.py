"""A table measured on another machine, or in another version of its runtime, is said so in one
line by the jobs that price with it; ``latency list`` marks which tables were measured here."""

import json
import shutil

import pytest

from tinynas.cli import main
from tinynas.latency import machine
from tinynas.resources import LATENCY_DIR


def _copy(table: str, folder, **changes):
    for suffix in (".csv", ".json"):
        shutil.copy(LATENCY_DIR / f"{table}{suffix}", folder / f"{table}{suffix}")
    sidecar = folder / f"{table}.json"
    meta = json.loads(sidecar.read_text())
    meta.update(changes)
    sidecar.write_text(json.dumps(meta))
    return folder / f"{table}.csv"


def test_another_cpu_or_runtime_version_is_a_mismatch_and_a_gpu_table_is_not_compared():
    here = machine.cpu_name()
    assert machine.mismatch({"device": "cpu", "device_name": here, "runtime": "torch"}) == []
    assert machine.mismatch({"device": "cpu", "device_name": "Intel Xeon (x86_64)", "runtime": "torch"}) == [
        f"measured on Intel Xeon (x86_64), this machine is {here}"]
    installed = machine.installed_version("onnxruntime")
    assert machine.mismatch({"device": "cpu", "device_name": here, "runtime": "onnxruntime",
                             "runtime_version": "1.16.0"}) == [f"timed in onnxruntime 1.16.0, {installed} is installed here"]
    assert machine.mismatch({"device": "cuda", "device_name": "NVIDIA V100", "runtime": "TensorRT"}) == []


def test_the_cpu_name_is_what_tables_record(monkeypatch):
    monkeypatch.undo()  # this machine's own name, not the shipped tables' (conftest)
    from tinynas.latency.measure import device_name
    import torch

    assert machine.cpu_name() == device_name(torch.device("cpu")) and machine.cpu_name().endswith(")")


def test_a_search_and_a_design_say_when_their_table_was_measured_elsewhere(tmp_path, capsys):
    table = _copy("cpu-fp32", tmp_path, device_name="Intel Xeon Gold 6338 (x86_64)")
    assert main(["search", "--space", "k1kx", "--budget", "latency=150ms", "--latency-db", str(table),
                 "--candidates", "20", "--out", str(tmp_path / "s"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("note: latency table cpu-fp32: measured on Intel Xeon Gold 6338 (x86_64), this machine is "
                     f"{machine.cpu_name()}: its ms may be off by a factor here") == 1
    from tinynas.data.synthetic import make_synthetic_dataset
    import yaml

    make_synthetic_dataset(tmp_path / "data", images=4, val_images=2, size=64, seed=0)
    data_yaml = tmp_path / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({
        "train_images": "data/images/train", "train_annotations": "data/annotations/train.json",
        "val_images": "data/images/val", "val_annotations": "data/annotations/val.json"}))
    code = main(["design", str(data_yaml), "--budget", "latency=0.001ms", "--latency-db", str(table),
                 "--runtime", "torch", "--out", str(tmp_path / "d"), "--quiet", "--size", "320", "--no-calibrate"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 2 and err[0].startswith("note: latency table cpu-fp32: measured on Intel")
    assert err[1].startswith("tinynas: error: ")  # the note comes first, before the pre-checks


def test_latency_list_shows_shipped_and_given_tables_and_which_were_measured_here(tmp_path, capsys):
    _copy("cpu-ort-fp32", tmp_path, device_name="Intel Xeon Gold 6338 (x86_64)")
    (tmp_path / "mine").mkdir()
    _copy("cpu-fp32", tmp_path / "mine")
    assert main(["latency", "list", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = {line.split()[0]: line.split() for line in lines[2:] if line.strip() and not line.startswith("this")}
    assert row["cpu-fp32"][-1] == "yes" and row["v100-trt-fp16"][-1] == "-"
    assert row[str(tmp_path / "cpu-ort-fp32.csv")][-1] == "no"
    assert row[str(tmp_path / "mine" / "cpu-fp32.csv")][-1] == "yes"
    assert row["cpu-ort-fp32"][1:7] == ["AMD", "EPYC", "(x86_64)", "onnxruntime", "1.32.0", "1"]
    assert main(["latency", "list", str(tmp_path / "nothing.csv")]) == 2
