"""Distillation losses and their weight schedule."""

import math

import pytest
import torch

from tinynas import UserError
from tinynas.distill import FeatureDistiller, distill_weight, self_distillation_loss
from tinynas.distill.feature_loss import cwd_loss


def _feats(channels, size=8, batch=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, c, size // 2 ** i, size // 2 ** i, generator=gen) for i, c in enumerate(channels)]


def test_cwd_is_zero_for_identical_features_and_positive_otherwise():
    t = torch.randn(2, 4, 5, 5)
    assert float(cwd_loss(t, t)) == pytest.approx(0.0, abs=1e-6)
    assert float(cwd_loss(t + torch.randn_like(t), t)) > 0


@pytest.mark.parametrize("method", ["cwd", "mimic"])
def test_distiller_loss_zero_when_student_reproduces_teacher(method):
    teacher = _feats([8, 16, 32])
    distiller = FeatureDistiller([8, 16, 32], [8, 16, 32], method=method)
    with torch.no_grad():
        for conv in distiller.align:  # make the align convs identities
            conv.weight.zero_()
            conv.weight[:, :, 0, 0].copy_(torch.eye(conv.weight.shape[0]))
            conv.bias.zero_()
        assert float(distiller(teacher, teacher)) == pytest.approx(0.0, abs=1e-5)
        assert float(distiller(_feats([8, 16, 32], seed=1), teacher)) > 0.01


@pytest.mark.parametrize("method", ["cwd", "mimic", "mgd"])
def test_gradients_reach_student_and_align_conv_not_teacher(method):
    # mgd masks 65% of the positions at random: with 4x4 levels (not 2x2) a wholly masked level,
    # which passes no gradient, is a one-in-a-million draw rather than one in thirty
    torch.manual_seed(0)
    student = [f.requires_grad_() for f in _feats([4, 8, 16], size=16, seed=2)]
    teacher = [f.requires_grad_() for f in _feats([8, 16, 32], size=16, seed=3)]
    distiller = FeatureDistiller([4, 8, 16], [8, 16, 32], method=method)
    loss = distiller(student, teacher)
    loss.backward()
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in student)
    assert all(t.grad is None for t in teacher)
    assert all(conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0 for conv in distiller.align)


def test_align_and_norm_modules_are_registered_and_saved():
    distiller = FeatureDistiller([4, 8], [8, 16])
    state = distiller.state_dict()
    assert "align.0.weight" in state and "student_norm.1.running_mean" in state and "teacher_norm.0.running_var" in state
    distiller.eval()
    assert not any(m.training for m in distiller.modules())


def test_mismatched_sizes_are_a_clear_error():
    distiller = FeatureDistiller([4], [8])
    with pytest.raises(UserError, match="differ in size"):
        distiller([torch.randn(1, 4, 8, 8)], [torch.randn(1, 8, 4, 4)])
    with pytest.raises(UserError, match="feature levels"):
        FeatureDistiller([4, 8], [8])


def test_weight_schedule_values():
    assert distill_weight(0, 100) == pytest.approx(1.0)
    assert distill_weight(50, 100) == pytest.approx(0.55)
    assert distill_weight(100, 100) == pytest.approx(0.1)
    assert distill_weight(25, 100) == pytest.approx(1 + (0.1 - 1) * (1 - math.cos(math.pi / 4)) / 2)
    assert distill_weight(90, 100, off_from=84) == 0.0
    assert distill_weight(50, 100, shape="linear", start=2.0, end=0.0) == pytest.approx(1.0)


def test_self_distillation_zero_for_equal_outputs():
    cls, reg = torch.randn(2, 10, 3), torch.randn(2, 10, 4 * 17)
    assert float(self_distillation_loss(cls, reg, cls, reg, reg_max=16)) == pytest.approx(0.0, abs=1e-6)
    student_cls = cls.clone().requires_grad_()
    loss = self_distillation_loss(student_cls, reg + 1.0 * torch.randn_like(reg), cls + 1, reg, reg_max=16)
    loss.backward()
    assert float(loss.detach()) > 0 and student_cls.grad.abs().sum() > 0


def test_logit_distillation_ignores_boxes_where_the_teacher_sees_nothing():
    torch.manual_seed(0)
    cls, reg = torch.randn(1, 6, 3), torch.randn(1, 6, 4 * 17)
    teacher_cls = cls.clone()
    teacher_cls[0, 3] = -30.0  # anchor 3: the teacher is sure there is no object
    base = self_distillation_loss(cls, reg, teacher_cls, reg, reg_max=16)
    moved = reg.clone()
    moved[0, 3] += 5.0 * torch.randn(4 * 17)
    assert float(self_distillation_loss(cls, reg, teacher_cls, moved, reg_max=16)) == pytest.approx(float(base), abs=1e-6)
    moved[0, 1] += 5.0 * torch.randn(4 * 17)  # a confident anchor's box does count
    assert float(self_distillation_loss(cls, reg, teacher_cls, moved, reg_max=16)) > float(base) + 1e-3
