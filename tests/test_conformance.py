"""Every shipped implementation of a swappable role passes its conformance check, and each check
catches an implementation that breaks the promise it is about."""

from __future__ import annotations

import importlib.util
import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from test_detect_io import CLASSES, tiny_model
from tinynas.checkpoint import save_checkpoint
from tinynas.conformance import (ConformanceError, check_extra_loss, check_judge, check_latency_model,
                                 check_runtime, check_strategy)
from tinynas.detect.model_recipe import load_model_recipe
from tinynas.distill.term import DistillationTerm
from tinynas.latency.detector_model import DetectorLatencyModel
from tinynas.latency.predictor import load_predictor
from tinynas.latency.runtimes import load_runtime
from tinynas.search import create_evolution
from tinynas.train.recipe import DistillConfig

BUDGETS = ["flops=6G", "layers=25"]
SETTINGS = dict(population=12, seed=5, stage_weights=[0, 0, 1, 1, 6])


def evolution():
    return create_evolution("k1kx", BUDGETS, latency="cpu-fp32", **SETTINGS)  # a shipped name, as the CLI takes


@pytest.fixture(scope="module")
def archs():
    strategy, judge = evolution()
    seeds, results = strategy.start(judge)
    strategy.tell(seeds, results)
    return [seeds[0].arch] + [c.arch for c in strategy.ask(4)]


# ---------------------------------------------------------------------------- latency models, judges
def test_the_shipped_latency_models_conform(archs):
    check_latency_model(load_predictor("cpu-fp32"), archs, 320)
    recipe = load_model_recipe("tinynas-n")
    # The backbone's input behind tinynas-n's Focus stem: 160 for a 320 image.
    check_latency_model(DetectorLatencyModel("cpu-ort-fp32-tinynas-n", recipe), archs, 160)


class Drifting:
    """Predicts more each time it is asked: a cache that grows into the answer."""

    def __init__(self):
        self.calls = 0

    def predict_ms(self, arch, resolution):
        self.calls += 1
        return 1.0 + self.calls


def test_a_latency_model_that_drifts_or_gives_nonsense_is_caught(archs):
    with pytest.raises(ConformanceError, match="changed its answer"):
        check_latency_model(Drifting(), archs, 320)
    broken = type("NaNModel", (), {"predict_ms": lambda self, arch, resolution: math.nan})()
    with pytest.raises(ConformanceError, match="expected finite positive milliseconds"):
        check_latency_model(broken, archs, 320)


class Generous:
    """Scores candidates that fit no rung."""

    def __init__(self, judge):
        self.judge = judge

    def evaluate(self, arch):
        return self.judge.evaluate(arch)._replace(within=(False,), score=1.0)

    def evaluate_values(self, arch):
        return self.judge.evaluate_values(arch)


def test_the_shipped_judge_conforms_and_one_that_scores_outside_the_budget_is_caught(archs):
    _, judge = evolution()
    check_judge(judge, archs)
    with pytest.raises(ConformanceError, match="scored exactly when it fits"):
        check_judge(Generous(judge), archs)
    local = type("Local", (Generous,), {})  # a class pickle cannot find by name
    with pytest.raises(ConformanceError, match="must pickle"):
        check_judge(local(judge), archs)


# ---------------------------------------------------------------------------- strategies
def test_the_shipped_strategy_conforms():
    _, judge = evolution()
    check_strategy(lambda: evolution()[0], judge)


def test_a_strategy_that_forgets_its_state_is_caught():
    _, judge = evolution()

    def forgetful():
        strategy = evolution()[0]
        strategy.load_state_dict = lambda state: None  # resumes from scratch
        return strategy

    with pytest.raises(ConformanceError, match="restored from state_dict"):
        check_strategy(forgetful, judge)


# ---------------------------------------------------------------------------- extra losses
@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    save_checkpoint(path, tiny_model(seed=7), CLASSES)
    return str(path)


IMAGES = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("method", ["cwd", "mimic", "mgd", "self"])
def test_the_distillation_terms_conform(teacher, method):
    config = DistillConfig(teacher=teacher, method=method)

    def student():
        return tiny_model(seed=1).train()

    check_extra_loss(lambda: DistillationTerm(config), student, IMAGES)
    check_extra_loss(lambda: DistillationTerm(replace(config, loss_weight=0.5)), student, IMAGES)


class WidthPenalty:
    """A regulariser with a trainable gate: the shape a user's own term takes."""

    name = "width_penalty"

    def __init__(self, restore=True):
        self.restore = restore
        self.gate = None

    def attach(self, student, device, amp):
        self.gate = nn.Linear(1, 1)
        return self.gate

    def loss(self, step):
        scale = self.gate(torch.ones(1, 1)).squeeze()
        return scale * sum(f.square().mean() for f in step.neck_features)

    def weight(self, step, loss, detection_loss, loss_scale):
        return 0.1

    def state_dict(self):
        return {"gate": self.gate.state_dict()}

    def load_state_dict(self, state):
        if self.restore:
            self.gate.load_state_dict(state["gate"])


def test_a_users_term_conforms_and_one_that_does_not_restore_is_caught():
    def student():
        return tiny_model(seed=1).train()

    check_extra_loss(WidthPenalty, student, IMAGES)
    with pytest.raises(ConformanceError, match="loaded with state_dict"):
        check_extra_loss(lambda: WidthPenalty(restore=False), student, IMAGES)
    clash = type("Clash", (WidthPenalty,), {"name": "loss"})
    with pytest.raises(ConformanceError, match="metrics column of its own"):
        check_extra_loss(clash, student, IMAGES)


# ---------------------------------------------------------------------------- runtimes
@pytest.mark.parametrize("name, module", [("onnxruntime", "onnxruntime"), ("openvino", "openvino")])
def test_the_installed_runtimes_conform(name, module):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    check_runtime(load_runtime(name, "cpu", "fp32", 1))


def test_a_runtime_that_records_too_little_is_caught():
    runtime = load_runtime("onnxruntime", "cpu", "fp32", 1)
    runtime.record = lambda: {"runtime": "onnxruntime"}
    with pytest.raises(ConformanceError, match="record"):
        check_runtime(runtime)
