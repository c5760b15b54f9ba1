"""Distillation as the trainer's extra loss term (the protocol in ``tinynas/train/extra_loss.py``).

A recipe's ``distill`` section becomes a ``DistillationTerm``: it loads the frozen teacher when
training attaches it to the student, compares the student with the teacher on every iteration
the schedule leaves on (neck features through ``FeatureDistiller`` for cwd/mimic/mgd, head
outputs for self/logit), and weighs the comparison by the schedule times a fixed
``loss_weight`` or the automatic weight. The feature distiller's align convs are trained with
the student; they and the automatic weight's state are saved in ``last.pt`` as ``distiller``,
``distill_auto_weight`` and ``distill_worth`` (the teacher's worth, ``worth.py``, a factor on the
automatic weight).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..checkpoint import load_checkpoint
from ..detect.detector import Detector
from ..errors import UserError
from ..train.extra_loss import StepContext
from ..train.recipe import AUTO, HEAD_METHODS, DistillConfig
from .auto_weight import AutoDistillWeight
from .feature_loss import FeatureDistiller
from .logit_loss import self_distillation_loss
from .schedule import distill_weight
from .worth import TeacherWorth, batch_fit_sums


def distillation_term(config: DistillConfig) -> DistillationTerm | None:
    """The term for a recipe's ``distill`` section; None when it names no teacher."""
    return DistillationTerm(config) if config.teacher else None


def check_teacher_classes(config: DistillConfig, class_names: Sequence[str]) -> None:
    """A teacher of other classes is refused in one line; the same classes in another order
    are refused for head methods, which compare class scores one by one (features carry no
    class order, so feature methods take such a teacher)."""
    theirs, mine = list(load_checkpoint(config.teacher).class_names), list(class_names)
    if theirs == mine:
        return
    if sorted(theirs) != sorted(mine):
        extra = sorted(set(theirs) - set(mine))[:3] or sorted(set(mine) - set(theirs))[:3]
        raise UserError(config.teacher, "class_names", f"the teacher was trained on other classes than the "
                        f"dataset's ({len(theirs)} against {len(mine)}, e.g. {', '.join(map(repr, extra))} in one "
                        "only): distil from a teacher of the same classes")
    if config.method in HEAD_METHODS:
        raise UserError(config.teacher, "class_names", f"the teacher has the dataset's classes in another order "
                        f"({', '.join(theirs[:4])}{', ...' if len(theirs) > 4 else ''}), and {config.method} "
                        "distillation compares class scores one by one; use a feature method (cwd, mimic, mgd)")


class DistillationTerm:
    name = "distill"

    def __init__(self, config: DistillConfig):
        self.config = config
        self.teacher_: Detector | None = None
        self.distiller_: FeatureDistiller | None = None
        self.auto_weight_: AutoDistillWeight | None = None
        self.worth_: TeacherWorth | None = None
        self.reg_max_ = 0
        self.student_: Detector | None = None
        self.teacher_seen_ = None  # this iteration's teacher outputs, as loss() computed them

    def attach(self, student: Detector, device: torch.device, amp: bool) -> nn.Module | None:
        """Load and check the teacher; build the feature distiller (the trainable part) if needed."""
        cfg = self.config
        ckpt = load_checkpoint(cfg.teacher)
        if ckpt.recipe.head.num_classes != student.num_classes:
            raise UserError(cfg.teacher, "head.num_classes", f"the teacher has {ckpt.recipe.head.num_classes} "
                            f"classes, the student {student.num_classes}")
        if cfg.method in HEAD_METHODS:
            mine, theirs = student.recipe.head, ckpt.recipe.head
            for field_name in ("reg_max", "strides"):
                if getattr(mine, field_name) != getattr(theirs, field_name):
                    raise UserError(cfg.teacher, f"head.{field_name}", f"{cfg.method} distillation compares "
                                    f"head outputs: the teacher has {getattr(theirs, field_name)}, the student "
                                    f"{getattr(mine, field_name)}")
            if mine.reg_max == 0:
                # Both heads predict the four distances directly: there is no box distribution to
                # compare, and a KL over one bin would silently distil the class scores alone.
                raise UserError(cfg.teacher, "head.reg_max", f"{cfg.method} distillation compares DFL box "
                                "distributions, and these heads have reg_max 0 (direct boxes); use a feature "
                                "method (cwd, mimic, mgd) or heads with reg_max > 0")
        # Built in this order (teacher, then the distiller's random init) so that a recipe's
        # draws from the torch RNG, and with them its weights, stay those of earlier versions.
        teacher = ckpt.build().to(device)
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.teacher_ = (teacher.half() if amp else teacher).eval()
        self.reg_max_ = student.head.reg_max
        self.student_ = student
        self.auto_weight_ = AutoDistillWeight(cfg.grad_ratio) if cfg.loss_weight == AUTO else None
        self.worth_ = TeacherWorth(cfg.worth_margin) if self.auto_weight_ is not None and cfg.worth_margin > 0 \
            else None
        self.distiller_ = None
        if cfg.method not in HEAD_METHODS:
            self.distiller_ = FeatureDistiller(student.recipe.neck.out_channels, ckpt.recipe.neck.out_channels,
                                               cfg.method, cfg.tau).to(device)
        return self.distiller_

    def schedule(self, step: StepContext) -> float:
        """The weight before the automatic scale: the schedule's shape, times a fixed loss_weight."""
        d = self.config
        off = step.no_aug_from if d.off_in_no_aug else None
        weight = distill_weight(step.iteration, step.total_iters, d.weight_start, d.weight_end, d.weight_shape, off)
        return weight if self.auto_weight_ is not None else weight * d.loss_weight

    def loss(self, step: StepContext) -> torch.Tensor | None:
        if not self.schedule(step) > 0:
            return None  # the teacher is not even run
        theirs = self.teacher_seen_ = self._teacher_outputs(step.images)
        if self.distiller_ is not None:
            return self.distiller_([f.float() for f in step.neck_features], theirs)
        return self_distillation_loss(step.cls_logits.float(), step.reg_logits.float(), *theirs, self.reg_max_,
                                      self.config.tau)

    def weight(self, step: StepContext, loss: torch.Tensor, detection_loss: torch.Tensor,
               loss_scale: float) -> float:
        weight = self.schedule(step)
        if self.auto_weight_ is not None:
            # the tensors both losses reach: the neck for feature methods, the head for head methods
            shared = step.neck_features if self.distiller_ is not None else (step.cls_logits, step.reg_logits)
            due = self.auto_weight_.due(step.iteration)
            weight *= self.auto_weight_.update(step.iteration, detection_loss, loss, shared, loss_scale)
            if self.worth_ is not None:
                if due and step.targets:
                    self._measure_worth(step)
                weight *= self.worth_.factor_
        return weight

    def logged(self) -> dict[str, float]:
        """With the teacher's worth: the factor it put on the weight, and the teacher's smoothed lead."""
        if self.worth_ is None:
            return {}
        return {"distill_worth": self.worth_.factor_,
                "distill_lead": self.worth_.lead_ if self.worth_.lead_ is not None else float("nan")}

    @torch.no_grad()
    def _measure_worth(self, step: StepContext) -> None:
        """Both models' fit to this batch's objects (``worth.py``), from the outputs already computed."""
        teacher = self.teacher_
        if self.distiller_ is not None:  # feature methods: the teacher's head on its neck features
            dtype = next(teacher.parameters()).dtype
            feats = self.teacher_seen_
            with torch.autocast(step.images.device.type, enabled=False):
                cls_t, reg_t = teacher.head([f.to(dtype) for f in feats])
        else:  # head methods: attach checked that the teacher's strides are the student's, so its grid is
            feats = step.neck_features
            cls_t, reg_t = self.teacher_seen_
        teacher_sums = batch_fit_sums(cls_t, reg_t, [f.shape[-2:] for f in feats], teacher.head.strides,
                                      teacher.head.reg_max, step.targets)
        # The student as the teacher is run (in eval mode: BatchNorm on its running statistics),
        # so that a copy of the student as teacher leads by exactly nothing.
        student, was_training = self.student_, self.student_.training
        student.eval()
        try:
            with torch.autocast(step.images.device.type, enabled=False):
                feats_s = student.features(step.images.to(next(student.parameters()).dtype))
                cls_s, reg_s = student.head(feats_s)
        finally:
            student.train(was_training)
        student_sums = batch_fit_sums(cls_s, reg_s, [f.shape[-2:] for f in feats_s], student.head.strides,
                                      student.head.reg_max, step.targets)
        self.worth_.observe(teacher_sums, student_sums)

    @torch.no_grad()
    def _teacher_outputs(self, images: torch.Tensor):
        """Neck features (feature methods) or head logits (head methods), in fp32."""
        self.teacher_.eval()  # whatever the caller did with .train(), the teacher stays frozen
        # Outside the trainer's autocast: a half teacher runs in half, a float one in float.
        with torch.autocast(images.device.type, enabled=False):
            feats = self.teacher_.features(images.to(next(self.teacher_.parameters()).dtype))
            if self.config.method in HEAD_METHODS:
                cls_logits, reg_logits = self.teacher_.head(feats)
                return cls_logits.float(), reg_logits.float()
            return [f.float() for f in feats]

    def state_dict(self) -> dict:
        state = {}
        if self.distiller_ is not None:
            state["distiller"] = self.distiller_.state_dict()
        if self.auto_weight_ is not None:
            state["distill_auto_weight"] = self.auto_weight_.state_dict()
        if self.worth_ is not None:
            state["distill_worth"] = self.worth_.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        if self.distiller_ is not None and "distiller" in state:
            self.distiller_.load_state_dict(state["distiller"])
        if self.auto_weight_ is not None and "distill_auto_weight" in state:
            self.auto_weight_.load_state_dict(state["distill_auto_weight"])
        if self.worth_ is not None and "distill_worth" in state:
            self.worth_.load_state_dict(state["distill_worth"])
