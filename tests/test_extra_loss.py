"""The trainer's extra-loss protocol with a term of our own (not distillation): it is trained,
logged, saved and restored; and train/ stays below distill/."""

import ast
import subprocess
import sys

import pytest
import torch
from torch import nn

from tinynas.checkpoint import load_checkpoint
from tinynas.train.recipe import parse_train_recipe
from tinynas.train.run import TrainRun
from tinynas.train.trainer import train

from conftest import ROOT
from train_helpers import synthetic, tiny_recipe


class ScaledFeatureL2:
    """``mean((s_level * feature)^2)`` summed over the neck levels, with a trainable scale
    ``s_level`` a level; left out on odd iterations; the weight falls linearly over the run.
    It counts the iterations it was computed in, state a resumed run must get back."""

    name = "l2"

    def __init__(self, weight: float):
        self.weight_at_start = weight
        self.scales: nn.ParameterList | None = None
        self.computed = 0

    def attach(self, student, device, amp):
        self.scales = nn.ParameterList(nn.Parameter(torch.ones(())) for _ in student.recipe.neck.out_channels)
        return self.scales.to(device)

    def loss(self, step):
        if step.iteration % 2 == 1:
            return None
        self.computed += 1
        return sum((s * f.float()).pow(2).mean() for s, f in zip(self.scales, step.neck_features))

    def weight(self, step, loss, detection_loss, loss_scale):
        return self.weight_at_start * (1.0 - step.iteration / step.total_iters)

    def state_dict(self):
        return {"l2_scales": self.scales.state_dict(), "l2_computed": self.computed}

    def load_state_dict(self, state):
        self.scales.load_state_dict(state["l2_scales"])
        self.computed = state["l2_computed"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic(tmp_path_factory.mktemp("extra"), images=16, val_images=4, size=64, seed=5)


def _recipe(data, out):
    # 16 images at batch 8: two iterations an epoch, four in the run
    return parse_train_recipe(tiny_recipe(data, out, 64, epochs=2, batch_size=8))


def test_a_custom_term_changes_training_and_resumes_with_its_state(data, tmp_path):
    train(_recipe(data, tmp_path / "plain"), progress=False)
    term = ScaledFeatureL2(weight=0.5)
    train(_recipe(data, tmp_path / "a"), progress=False, extra_loss=term)
    assert term.computed == 2  # iterations 0 and 2

    rows = TrainRun(tmp_path / "a").metrics()
    # epoch means of the weight: iterations (0, 1) then (2, 3) of 4, odd ones left out (weight 0)
    assert [float(r["l2_weight"]) for r in rows] == pytest.approx([0.5 * 1.0 / 2, 0.5 * 0.5 / 2], rel=1e-5)
    assert all(float(r["l2"]) > 0 for r in rows)

    a = load_checkpoint(tmp_path / "a" / "last.pt")
    plain = load_checkpoint(tmp_path / "plain" / "last.pt")
    assert a.extra["l2_computed"] == 2
    # the optimiser trained the term's scales (pulling the penalty down), and the term moved the student
    scales = [float(v) for v in a.extra["l2_scales"].values()]
    assert len(scales) == 3 and all(s < 1.0 for s in scales)
    assert any(not torch.equal(a.extra["model"][k], plain.extra["model"][k]) for k in plain.extra["model"])

    # interrupted after one epoch and resumed with a fresh term: the same run as uninterrupted
    train(_recipe(data, tmp_path / "b"), stop_after=1, progress=False, extra_loss=ScaledFeatureL2(weight=0.5))
    resumed = ScaledFeatureL2(weight=0.5)
    train(_recipe(data, tmp_path / "b"), resume=True, progress=False, extra_loss=resumed)
    assert resumed.computed == 2  # 1 restored from last.pt, 1 more in the second epoch
    b = load_checkpoint(tmp_path / "b" / "last.pt")
    for key in a.extra["model"]:
        assert torch.equal(a.extra["model"][key], b.extra["model"][key]), key
    for key in a.extra["l2_scales"]:
        assert torch.equal(a.extra["l2_scales"][key], b.extra["l2_scales"][key]), key
    assert [r["l2"] for r in TrainRun(tmp_path / "b").metrics()] == [r["l2"] for r in rows]


def test_a_term_may_not_overwrite_the_trainers_resume_state(data, tmp_path):
    class Clobbering(ScaledFeatureL2):
        def state_dict(self):
            return {"optimizer": {}}

    with pytest.raises(ValueError, match="optimizer"):
        train(_recipe(data, tmp_path / "run"), progress=False, extra_loss=Clobbering(weight=0.5))


def test_a_recipe_with_a_teacher_needs_the_distillation_term(data, tmp_path):
    doc = tiny_recipe(data, tmp_path / "run", 64, epochs=1, batch_size=8)
    doc["distill"] = {"teacher": str(tmp_path / "teacher.pt")}
    with pytest.raises(ValueError, match="distillation_term"):
        train(parse_train_recipe(doc), progress=False)
    assert not (tmp_path / "run").exists()


def _imported_modules(path):
    """Absolute names of what the import statements of ``path`` (a module under ROOT) import."""
    package = list(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            # ``from .. import distill`` imports a module too
            names += [module] + [f"{module}.{alias.name}" for alias in node.names]
    return names


def _distill_imports(path):
    return [n for n in _imported_modules(path) if n == "tinynas.distill" or n.startswith("tinynas.distill.")]


def test_training_imports_nothing_from_distillation():
    train_dir = ROOT / "tinynas" / "train"
    files = sorted(train_dir.rglob("*.py"))
    assert any(f.name == "trainer.py" for f in files)
    assert {str(f.relative_to(ROOT)): _distill_imports(f) for f in files if _distill_imports(f)} == {}
    # and at run time: importing every module of tinynas.train loads no tinynas.distill module
    code = ("import importlib, pkgutil, sys\n"
            "import tinynas.train as t\n"
            "names = [m.name for m in pkgutil.walk_packages(t.__path__, 'tinynas.train.')]\n"
            "assert 'tinynas.train.trainer' in names, names\n"
            "for n in names: importlib.import_module(n)\n"
            "print(sorted(m for m in sys.modules if m.startswith('tinynas.distill')))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"
