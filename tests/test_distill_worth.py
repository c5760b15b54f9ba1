"""The teacher's worth (``distill.worth_margin``): the automatic distillation weight scaled by how
much better the teacher fits the training batch than the student, to zero for a teacher no
better than the student."""

import math

import pytest
import torch

from tinynas.checkpoint import load_checkpoint
from tinynas.cli import main
from tinynas.data import CocoDataset, DetectionDataset
from tinynas.data.collate import collate_detection
from tinynas.detect.detector import Detector
from tinynas.distill.term import DistillationTerm
from tinynas.distill.worth import TeacherWorth, batch_fit_sums
from tinynas.train.extra_loss import StepContext
from tinynas.train.recipe import parse_train_recipe
from tinynas.train.run_files import MetricsLog
from tinynas.api import train_detector as train

from train_helpers import synthetic, tiny_recipe


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_fit_is_the_best_score_times_iou_per_object():
    # One 2x2 level at stride 8, boxes as distances in strides (reg_max 0): anchor 0 at (0, 0)
    # decodes to exactly the first object, anchor 3 at (8, 8) to a box half over the second.
    cls = torch.full((1, 4, 2), _logit(0.05))
    reg = torch.zeros((1, 4, 4))
    reg[0, 0] = torch.tensor([0.0, 0.0, 2.0, 2.0])  # [0, 0, 16, 16]
    reg[0, 3] = torch.tensor([0.0, 0.0, 1.0, 2.0])  # [8, 8, 16, 24]
    cls[0, 0, 0] = _logit(0.7)
    cls[0, 3, 1] = _logit(0.9)
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 16.0, 16.0], [8.0, 8.0, 24.0, 24.0]]),
                "labels": torch.tensor([0, 1])}]
    sums = batch_fit_sums(cls, reg, [(2, 2)], [8], 0, targets)
    assert sums[1] == 2
    assert float(sums[0]) == pytest.approx(0.7 * 1.0 + 0.9 * 0.5, rel=1e-5)
    # an image without objects adds nothing; the wrong class's score does not count
    empty = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.long)}
    assert torch.equal(batch_fit_sums(cls.repeat(2, 1, 1), reg.repeat(2, 1, 1), [(2, 2)], [8], 0,
                                      [targets[0], empty]), sums)
    swapped = [{"boxes": targets[0]["boxes"], "labels": torch.tensor([1, 0])}]
    # now each object's best is another anchor's partial overlap: 0.9 x IoU 0.2, 0.7 x IoU 64/448
    assert float(batch_fit_sums(cls, reg, [(2, 2)], [8], 0, swapped)[0]) == pytest.approx(0.9 * 0.2 + 0.7 * 64 / 448,
                                                                                          rel=1e-5)


def _sums(fit: float, objects: int = 10) -> torch.Tensor:
    return torch.tensor([fit * objects, objects], dtype=torch.float64)


def test_the_factor_is_the_teachers_lead_over_the_margin_smoothed():
    worth = TeacherWorth(margin=0.2)
    assert worth.factor_ == 1.0  # nothing measured: the weight as without the factor
    assert worth.observe(_sums(0.5), _sums(0.5)) == 0.0  # no lead: no distillation
    worth = TeacherWorth(margin=0.2)
    assert worth.observe(_sums(0.5), _sums(0.45)) == pytest.approx(0.5)  # lead 10% of 20%
    assert TeacherWorth(margin=0.2).observe(_sums(0.5), _sums(0.4)) == pytest.approx(1.0)
    assert TeacherWorth(margin=0.2).observe(_sums(0.5), _sums(0.1)) == 1.0  # clipped
    assert TeacherWorth(margin=0.2).observe(_sums(0.4), _sums(0.5)) == 0.0  # the student leads
    # the factor grows with the teacher's lead
    factors = [TeacherWorth(margin=0.2).observe(_sums(t), _sums(0.4)) for t in (0.4, 0.42, 0.45, 0.48, 0.5)]
    assert factors == sorted(factors) and factors[0] == 0 and factors[-1] == pytest.approx(1)
    # smoothed: one measurement moves the factor by a tenth of the way
    worth = TeacherWorth(margin=0.2)
    worth.observe(_sums(0.5), _sums(0.4))
    assert worth.observe(_sums(0.5), _sums(0.5)) == pytest.approx(0.9)
    assert worth.lead_ == pytest.approx(0.9 * 0.2)
    # a batch without objects leaves it as it was
    assert worth.observe(_sums(0.0, 0), _sums(0.0, 0)) == pytest.approx(0.9) and worth.measurements_ == 2
    restored = TeacherWorth(margin=0.2)
    restored.load_state_dict(worth.state_dict())
    assert restored.state_dict() == worth.state_dict()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic(tmp_path_factory.mktemp("worth"), images=16, val_images=4, size=64, seed=5)


def _batch(data, count: int = 8):
    dataset = DetectionDataset(CocoDataset(data.train_annotations, data.train_images), 64)
    return collate_detection([dataset[i] for i in range(count)])


def _weight(teacher_ckpt, doc, student: Detector, images, targets, method: str = "cwd") -> tuple[float, dict]:
    """The term's weight on one batch at iteration 0, and what it logged."""
    doc = dict(doc, distill={"teacher": str(teacher_ckpt), "method": method})
    term = DistillationTerm(parse_train_recipe(doc).distill)
    term.attach(student, torch.device("cpu"), False)
    feats = student.features(images)
    cls_logits, reg_logits = student.head(feats)
    step = StepContext(0, 100, 90, images, tuple(feats), cls_logits, reg_logits, tuple(targets))
    loss = term.loss(step)
    detection = sum(f.square().mean() for f in feats) + cls_logits.square().mean()  # any loss on shared tensors
    return term.weight(step, loss, detection, 1.0), term.logged()


@pytest.mark.parametrize("method", ["cwd", "logit"])
def test_a_frozen_copy_of_the_student_gets_no_weight_and_a_better_teacher_does(data, tmp_path, method):
    trained_doc = tiny_recipe(data, tmp_path / "t", 64, epochs=8, batch_size=8)
    train(parse_train_recipe(trained_doc), progress=False)
    trained = tmp_path / "t" / "best.pt"
    # the student is a model trained one epoch: a frozen copy of itself as teacher is no better on
    # any batch, and the teacher trained eight fits the batch better than it does
    train(parse_train_recipe(tiny_recipe(data, tmp_path / "c", 64, epochs=1, batch_size=8)), progress=False)
    # (in eval mode: a training forward would move its BatchNorm statistics off the copy's)
    student = load_checkpoint(tmp_path / "c" / "last.pt").build()
    images, targets = _batch(data)
    doc = tiny_recipe(data, tmp_path / "s", 64, epochs=1)

    weight, logged = _weight(tmp_path / "c" / "last.pt", doc, student, images, targets, method)
    assert weight == 0.0 and logged["distill_worth"] == 0.0 and logged["distill_lead"] == pytest.approx(0.0, abs=1e-6)
    weight, logged = _weight(trained, doc, student, images, targets, method)
    assert weight > 0 and logged["distill_worth"] > 0 and logged["distill_lead"] > 0
    # worth_margin 0: the weight ignores the teacher's worth (the automatic weight alone)
    doc_off = dict(doc, distill={"teacher": str(tmp_path / "c" / "last.pt"), "method": method, "worth_margin": 0})
    term = DistillationTerm(parse_train_recipe(doc_off).distill)
    term.attach(student, torch.device("cpu"), False)
    assert term.worth_ is None and term.logged() == {}


def test_the_worth_is_logged_per_epoch_and_resumes_with_the_run(data, tmp_path):
    train(parse_train_recipe(tiny_recipe(data, tmp_path / "t", 64, epochs=4, batch_size=8)), progress=False)
    doc = tiny_recipe(data, tmp_path / "a", 64, epochs=2, batch_size=8)
    doc["distill"] = {"teacher": str(tmp_path / "t" / "best.pt"), "method": "cwd"}
    train(parse_train_recipe(doc), progress=False)
    train(parse_train_recipe(dict(doc, out=str(tmp_path / "b"))), stop_after=1, progress=False)
    assert main(["train", "--resume", str(tmp_path / "b"), "--quiet"]) == 0
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert a.extra["distill_worth"] == b.extra["distill_worth"]
    assert a.extra["distill_worth"]["measurements"] == 4
    rows_a = MetricsLog(tmp_path / "a" / "metrics.csv").rows()
    rows_b = MetricsLog(tmp_path / "b" / "metrics.csv").rows()
    for key in ("distill_worth", "distill_lead", "distill_weight"):
        assert [r[key] for r in rows_a] == [r[key] for r in rows_b], key
    assert all(0 <= float(r["distill_worth"]) <= 1 for r in rows_a)


def test_mean_worth_averages_the_runs_epochs_and_is_nan_where_unmeasured(tmp_path):
    from tinynas.distill.chain import mean_worth
    from tinynas.train.run import TrainRun

    log = MetricsLog(tmp_path / "a" / "metrics.csv")
    (tmp_path / "a").mkdir()
    log.append({"epoch": 1, "distill_worth": 1.0})
    log.append({"epoch": 2, "distill_worth": 0.5})
    assert mean_worth(TrainRun(tmp_path / "a")) == pytest.approx(0.75)
    (tmp_path / "b").mkdir()
    MetricsLog(tmp_path / "b" / "metrics.csv").append({"epoch": 1, "distill_weight": 0.02})
    assert math.isnan(mean_worth(TrainRun(tmp_path / "b")))


def _auto_chain(data, tmp_path, name: str, worth_margin: float):
    import yaml

    from train_helpers import write_recipe

    stage = tiny_recipe(data, tmp_path / "unused", 64, epochs=1, batch_size=8)
    stage.pop("out")
    write_recipe(tmp_path / "large.yaml", dict(stage, name="L", neck={**stage["neck"], "out_channels": [48, 96, 192]}))
    write_recipe(tmp_path / "medium.yaml", dict(stage, name="M"))
    chain = {"name": name, "out": str(tmp_path / name), "baseline": "auto",
             "distill": {"method": "cwd", "worth_margin": worth_margin},
             "stages": [{"name": "L", "recipe": "large.yaml"}, {"name": "M", "recipe": "medium.yaml"}]}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(chain))
    return path


def test_baseline_auto_trains_a_plain_run_only_where_the_teacher_fell_short(data, tmp_path, capsys, monkeypatch):
    from tinynas.distill import chain as chain_module

    # worth not measured (worth_margin 0): the gain is uncertain, so M is also trained plain
    assert main(["distill-chain", str(_auto_chain(data, tmp_path, "unmeasured", 0.0)), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert (tmp_path / "unmeasured" / "M-plain" / "best.pt").is_file() and "(not measured)" in printed
    rows = (tmp_path / "unmeasured" / "summary.csv").read_text().splitlines()
    assert rows[0].endswith(",worth") and rows[2].split(",")[7] != ""  # M's AP_plain is there
    # a teacher worth the full weight throughout: M is distilled only, and said so
    monkeypatch.setattr(chain_module, "mean_worth", lambda run: 1.0)
    assert main(["distill-chain", str(_auto_chain(data, tmp_path, "worthy", 0.2)), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert not (tmp_path / "worthy" / "M-plain").exists()
    assert "M: the teacher was worth 1.00 of the full weight on average" in printed and "no plain run" in printed
    row = (tmp_path / "worthy" / "summary.csv").read_text().splitlines()[2].split(",")
    assert row[7] == "" and float(row[9]) == 1.0
    # model counts: the plain run counted only where it is trained
    assert "model 2/3" in printed and "model 3/3" not in printed
