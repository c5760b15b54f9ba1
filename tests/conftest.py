import os
import random
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers on two cores: one thread each, or OpenMP's spin-waiting threads slow both ~10x
    # (set before torch is imported; subprocesses a test starts inherit it).
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"

ROOT = Path(__file__).resolve().parent.parent
SPACE_NAMES = ["k1kx", "kxkx", "k1kxk1", "k1dwk1"]
DAMOYOLO = ["t", "s", "m", "l"]


@pytest.fixture
def rng():
    return random.Random(1234)


def space_path(name: str) -> Path:
    return ROOT / "search_spaces" / f"{name}.yaml"


def arch_path(name: str) -> Path:
    return ROOT / "recipes" / "archs" / f"{name}.txt"


def pytest_terminal_summary(terminalreporter):
    """The fuzz tests' totals: how many inputs they tried and how many distinct errors they met."""
    from fuzzing import summary
    line = summary()
    if line:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """(synthetic data, run folder) of one epoch on shapes: enough for a small non-zero val AP,
    shared by the tests that compare what predict writes with what eval scores."""
    from tinynas.train.recipe import parse_train_recipe
    from tinynas.train.trainer import train
    from train_helpers import synthetic, tiny_recipe

    root = tmp_path_factory.mktemp("trained")
    data = synthetic(root / "data", images=32, val_images=8, size=128, seed=3)
    train(parse_train_recipe(tiny_recipe(data, root / "run", 128, epochs=1, batch_size=16)), progress=False)
    return data, root / "run"


@pytest.fixture(autouse=True)
def _the_shipped_tables_machine(monkeypatch):
    """Every test runs as if on the machine the shipped CPU tables were measured on, so a job
    pricing with one prints no "measured on another machine" note that a test counting lines
    of output would trip over; tests of that note set the machine themselves."""
    import json

    from tinynas.latency import machine

    meta = json.loads((ROOT / "latency_db" / "cpu-ort-fp32.json").read_text())
    versions = {"onnxruntime": meta["runtime_version"], "tensorrt": meta["runtime_version"],
                "openvino": json.loads((ROOT / "latency_db" / "cpu-ov-fp32.json").read_text())["runtime_version"]}
    monkeypatch.setattr(machine, "cpu_name", lambda: meta["device_name"])
    monkeypatch.setattr(machine, "installed_version", lambda runtime: versions.get(runtime.lower()))


@pytest.fixture(autouse=True)
def _fresh_rename_notes(monkeypatch):
    """An old spelling's note is said once per process: each test starts with none said, so a
    test that looks for the note finds it whichever tests ran before it in its worker."""
    from tinynas import renamed

    monkeypatch.setattr(renamed, "_SAID", set())
