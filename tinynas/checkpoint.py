"""Detector checkpoints: weights plus everything needed to rebuild the model.

A checkpoint is a plain dict saved with ``torch.save`` and read with
``torch.load(weights_only=True)``, so loading one never runs code. It holds the *resolved*
recipe (architecture inline), the class names, whether the weights are in the fused
(re-parameterised) form, the state dict, and an optional ``extra`` dict for trainers
(epoch, optimiser state, EMA...) made of tensors and plain Python values.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from .atomic import atomic_write_bytes
from .detect.detector import Detector
from .detect.recipe import ModelRecipe, parse_model_recipe
from .errors import UserError

FORMAT = "tinynas-detector"
VERSION = 1


def default_class_names(num_classes: int) -> list[str]:
    from .detect.coco import COCO_CLASSES
    if num_classes == len(COCO_CLASSES):
        return list(COCO_CLASSES)
    return [f"class{i}" for i in range(num_classes)]


@dataclass
class Checkpoint:
    recipe: ModelRecipe
    class_names: list[str]
    state_dict: dict
    fused: bool = False
    extra: dict = field(default_factory=dict)
    bn_eps: float | None = None  # None: PyTorch's default (checkpoints written before it was kept)

    def build(self) -> Detector:
        """The detector with these weights, in eval mode."""
        model = Detector(self.recipe)
        if self.bn_eps is not None:
            set_bn_eps(model, self.bn_eps)
        if self.fused:
            model.fuse()
        try:
            missing, unexpected = model.load_state_dict(self.state_dict, strict=False)
        except RuntimeError as err:  # tensors of the wrong shape for this recipe
            first = str(err).strip().splitlines()[-1].strip()
            raise UserError("<checkpoint>", "state_dict", f"weights do not fit the recipe ({first[:200]})") from None
        if missing or unexpected:
            what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
            raise UserError("<checkpoint>", "state_dict", f"weights do not fit the recipe ({what}, "
                            f"{len(missing)} missing, {len(unexpected)} unexpected)")
        return model.eval()


def set_bn_eps(model: torch.nn.Module, eps: float) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eps = eps


def _bn_eps(model: torch.nn.Module) -> float | None:
    """The BatchNorm epsilon a trainer set (DAMO-YOLO trains with 1e-3). It is not part of the
    state dict, yet it changes every output: a rebuilt model must get it back."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            return float(m.eps)
    return None


def save_checkpoint(path: str | os.PathLike, model: Detector, class_names: Sequence[str] | None = None,
                    extra: dict | None = None) -> None:
    """Write ``model`` (fused or not) atomically; ``class_names`` default to COCO's for 80 classes."""
    names = list(class_names) if class_names is not None else default_class_names(model.num_classes)
    if len(names) != model.num_classes:
        raise ValueError(f"{len(names)} class names for a {model.num_classes}-class model")
    doc = {
        "format": FORMAT, "version": VERSION, "recipe": model.recipe.to_dict(), "class_names": names,
        "fused": model.is_fused, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": extra or {},
    }
    eps = _bn_eps(model)
    if eps is not None:
        doc["bn_eps"] = eps
    buffer = io.BytesIO()
    torch.save(doc, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint; every way it can be wrong is a ``UserError`` naming the file."""
    source = str(path)
    if not Path(path).is_file():
        raise UserError(source, "", "weights file not found")
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else err.__class__.__name__
        raise UserError(source, "", f"not a readable tinynas checkpoint ({first[:200]})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UserError(source, "format", f"not a tinynas detector checkpoint (expected format {FORMAT!r})")
    if doc.get("version") != VERSION:
        raise UserError(source, "version", f"unsupported checkpoint version {doc.get('version')!r}")
    for key in ("recipe", "class_names", "state_dict"):
        if key not in doc:
            raise UserError(source, key, "missing")
    recipe = parse_model_recipe(doc["recipe"], f"{source} (recipe)")
    names = doc["class_names"]
    if not isinstance(names, list) or len(names) != recipe.head.num_classes:
        raise UserError(source, "class_names", f"expected {recipe.head.num_classes} class names")
    eps = doc.get("bn_eps")
    if eps is not None and (isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0):
        raise UserError(source, "bn_eps", f"expected a positive number, got {eps!r}")
    return Checkpoint(recipe, [str(n) for n in names], doc["state_dict"], bool(doc.get("fused", False)),
                      doc.get("extra") or {}, None if eps is None else float(eps))


def load_detector(path: str | os.PathLike, recipe: ModelRecipe | None = None) -> tuple[Detector, list[str]]:
    """The detector and class names stored in ``path``.

    With ``recipe``, the checkpoint must describe the same number of classes; the
    checkpoint's own architecture is used (the weights only fit that one).
    """
    ckpt = load_checkpoint(path)
    if recipe is not None and recipe.head.num_classes != ckpt.recipe.head.num_classes:
        raise UserError(str(path), "head.num_classes",
                        f"the checkpoint has {ckpt.recipe.head.num_classes} classes but the recipe "
                        f"has {recipe.head.num_classes}")
    try:
        return ckpt.build(), ckpt.class_names
    except UserError as err:
        raise UserError(str(path), err.field, err.reason) from None
