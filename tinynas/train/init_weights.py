"""Fine-tuning: a fresh run's model starts from a tinynas checkpoint (``train.init``).

The checkpoint must hold the recipe's model (its class count may differ). Every tensor it holds
under the same name and shape is loaded (BatchNorm statistics included). The class-specific tensors (the head's class convs, whose first dimension is the
class count) are matched class by class by name: a class the checkpoint knows keeps its trained
row, a new class keeps its fresh initialisation, so a model trained on COCO fine-tunes on a set
of "person" and "forklift" with its person row intact. Everything else stays as the recipe
initialised it, and the run says which tensors those are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import torch

from ..checkpoint import load_checkpoint
from ..detect.detector import Detector
from ..detect.recipe_difference import model_difference
from ..errors import UserError
from ..nn.rep_forms import rep_form_of


@dataclass
class InitReport:
    """What ``load_initial_weights`` did, for the run's one-line note."""

    path: str
    loaded: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)  # in the model, not loaded (absent or of another shape)
    unused: list[str] = field(default_factory=list)  # in the checkpoint, not in the model
    classes_kept: list[str] = field(default_factory=list)  # classes whose class rows came from the checkpoint
    classes_new: list[str] = field(default_factory=list)

    def summary(self) -> str:
        total = len(self.loaded) + len(self.fresh)
        text = f"train.init: {len(self.loaded)} of {total} tensors from {self.path}"
        if self.classes_new:
            text += (f"; class rows of {len(self.classes_kept)} of {len(self.classes_kept) + len(self.classes_new)} "
                     f"classes (new: {_listed(self.classes_new)})")
        if self.fresh:
            text += f"; initialised fresh: {_listed(self.fresh)}"
        if self.unused:
            text += f"; {len(self.unused)} checkpoint tensors unused"
        return text


def _listed(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def class_tensor_names(model: Detector) -> set[str]:
    """The state-dict keys whose first dimension is the class count, found by building the same
    recipe with one class more on the meta device (no memory, no RNG drawn)."""
    recipe = model.recipe
    with torch.device("meta"):
        other = Detector(recipe.with_num_classes(recipe.head.num_classes + 1)).state_dict()
    own = model.state_dict()
    return {key for key, value in own.items() if key in other and other[key].shape != value.shape}


def load_initial_weights(model: Detector, class_names: Sequence[str], path: str | os.PathLike,
                         source: str = "<recipe>") -> InitReport:
    """Load what fits of the checkpoint at ``path`` into ``model`` (whose classes are
    ``class_names``); refused in one line, naming ``source``'s train.init, when the file is
    missing or fused, or when nothing but its class rows would be loaded."""
    if not os.path.isfile(path):
        raise UserError(source, "train.init", f"no such checkpoint: {path}")
    ckpt = load_checkpoint(path)
    # Tensors of another architecture can share names and shapes by chance (a stem, a BatchNorm of
    # the same width): loading those would be noise, so the model must be the same, classes aside.
    difference = model_difference(ckpt.recipe.with_num_classes(model.num_classes).to_dict(), model.recipe.to_dict())
    if difference is not None:
        raise UserError(source, "train.init", f"{path} holds another model ({difference}): fine-tune from a "
                        "checkpoint of the recipe's model (its class count may differ)")
    if ckpt.fused:
        raise UserError(source, "train.init", f"{path} is a fused (deployment) checkpoint: start from a training "
                        "run's best.pt or last.pt, whose weights are not re-parameterised")
    form = rep_form_of(model)
    if ckpt.rep_form != form:  # the branches of one form hold other quantities than another's
        raise UserError(source, "train.init", f"{path} trained its RepConv units in the {ckpt.rep_form} form, this "
                        f"run trains them in the {form} form: set train.rep_form={ckpt.rep_form}, or start from a "
                        "checkpoint of the same form")
    theirs, report = ckpt.state_dict, InitReport(str(path))
    rows = {name: i for i, name in enumerate(ckpt.class_names)}
    by_class = class_tensor_names(model)
    state = model.state_dict()
    pairs = [(i, rows[name]) for i, name in enumerate(class_names) if name in rows]
    for key, value in state.items():
        stored = theirs.get(key)
        if key in by_class and stored is not None and stored.shape[1:] == value.shape[1:] and pairs:
            merged = value.clone()
            for mine, stored_row in pairs:
                merged[mine] = stored[stored_row].to(value.dtype)
            state[key] = merged
            report.loaded.append(key)
        elif key not in by_class and stored is not None and stored.shape == value.shape:
            state[key] = stored.to(value.dtype)
            report.loaded.append(key)
        else:
            report.fresh.append(key)
    report.unused = [key for key in theirs if key not in state]
    report.classes_kept = [name for name in class_names if name in rows]
    report.classes_new = [name for name in class_names if name not in rows]
    model.load_state_dict(state)
    return report
