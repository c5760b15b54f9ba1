"""Detector checkpoints: weights plus everything needed to rebuild the model.

A checkpoint is a plain dict saved with ``torch.save`` and read with
``torch.load(weights_only=True)``, so loading one never runs code. It holds the *resolved*
recipe (architecture inline), the class names and the category ids of the dataset they came
from (``category_ids``; checkpoints written before it was kept have none), whether the weights are in the fused
(re-parameterised) form, the training form of its RepConv units when it is not the default
(``rep_form``: ``plain`` after RepOptimizer, ``scaled`` after its hyper-search), the int8 activation
form a quantization-aware training simulated (``qat``; its convs then carry their observed ranges,
``nn/fake_quant.py``), the state dict, the square input size it was trained at (``size``,
the recipe's ``data.size``; checkpoints written before it was kept have none, and predict and
export then take ``DEFAULT_SIZE``), and an optional ``extra`` dict for trainers (epoch,
optimiser state, EMA...) made of tensors and plain Python values.

torch's zip reader does not check the records' CRCs, so flipped bytes inside tensor data
load silently. Each checkpoint therefore carries ``sha256``: a hash of its own content (every
key and plain value, and each tensor's dtype, shape and bytes), checked at load. Checkpoints
written before the hash existed still load.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from .atomic import atomic_write_bytes
from .detect.detector import Detector
from .detect.model_recipe import ModelRecipe, parse_model_recipe
from .errors import UserError
from .nn.fake_quant import ACTIVATION_FORMS, fake_quant_form, prepare_fake_quant
from .nn.rep_forms import DEFAULT_FORM, rep_form_of, set_rep_form
from .nn.repconv import REP_FORMS

FORMAT = "tinynas-detector"
VERSION = 1
HASH_KEY = "sha256"
KNOWN_KEYS = {"format", "version", "recipe", "class_names", "category_ids", "fused", "state_dict", "extra", "bn_eps",
              "size", "rep_form", "qat", HASH_KEY}
DEFAULT_SIZE = 640  # the input size of a checkpoint that does not record its own (what predict and export always took)


def default_class_names(num_classes: int) -> list[str]:
    from .detect.coco_classes import COCO_CLASSES
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
    category_ids: list[int] | None = None  # the training set's id of each class; None when not kept
    size: int | None = None  # the square input size it was trained at; None when not kept
    rep_form: str = DEFAULT_FORM  # the RepConv units' training form (nn/rep_forms.py)
    qat: str | None = None  # the activation form a quantization-aware training simulated (nn/fake_quant.py)

    def build(self) -> Detector:
        """The detector with these weights, in eval mode."""
        model = Detector(self.recipe)
        if self.rep_form != DEFAULT_FORM:
            set_rep_form(model, self.rep_form)
        if self.bn_eps is not None:
            set_bn_eps(model, self.bn_eps)
        if self.fused:
            model.fuse()
        if self.qat is not None:
            prepare_fake_quant(model, self.qat)
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


def content_hash(doc: object) -> str:
    """sha256 of a checkpoint document, walked in its stored order (pickle keeps dict order,
    so the same walk at load sees the same sequence)."""
    digest = hashlib.sha256()
    _feed(digest, doc)
    return digest.hexdigest()


def _feed(digest, value: object) -> None:
    # Every item is tagged and sized, so no two different documents feed the same bytes.
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
        if tensor.layout != torch.strided:
            raise TypeError(f"cannot hash a {tensor.layout} tensor")
        raw = tensor.cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
        digest.update(f"T{tensor.dtype}{list(tensor.shape)}:{raw.nbytes};".encode())
        digest.update(raw)
    elif isinstance(value, dict):
        digest.update(f"D{len(value)};".encode())
        for key, item in value.items():
            _feed(digest, key)
            _feed(digest, item)
    elif isinstance(value, (list, tuple)):  # a torch.Size too
        digest.update(f"L{len(value)};".encode())
        for item in value:
            _feed(digest, item)
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        digest.update(f"S{len(data)};".encode())
        digest.update(data)
    elif value is None or isinstance(value, bool):
        digest.update(f"{value!r};".encode())
    elif isinstance(value, int):
        digest.update(f"I{value};".encode())
    elif isinstance(value, float):
        digest.update(f"F{float(value).hex()};".encode())  # exact, unlike repr of a numpy float
    elif isinstance(value, (torch.dtype, torch.device)):
        digest.update(f"O{value};".encode())
    else:
        raise TypeError(f"cannot hash a {type(value).__name__} in a checkpoint")


def save_checkpoint(path: str | os.PathLike, model: Detector, class_names: Sequence[str] | None = None,
                    extra: dict | None = None, category_ids: Sequence[int] | None = None,
                    size: int | None = None) -> None:
    """Write ``model`` (fused or not) atomically; ``class_names`` default to COCO's for 80 classes.
    ``category_ids``: the dataset's id of each class, what a COCO results file names it by;
    ``size``: the square input size it was trained at, what predict, export and eval then use."""
    names = list(class_names) if class_names is not None else default_class_names(model.num_classes)
    if len(names) != model.num_classes:
        raise ValueError(f"{len(names)} class names for a {model.num_classes}-class model")
    doc = {
        "format": FORMAT, "version": VERSION, "recipe": model.recipe.to_dict(), "class_names": names,
        "fused": model.is_fused, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": extra or {},
    }
    if category_ids is not None:
        ids = [int(i) for i in category_ids]
        if len(ids) != len(names) or len(set(ids)) != len(ids):
            raise ValueError(f"{len(ids)} category ids for {len(names)} classes, or repeated ids: {ids}")
        doc["category_ids"] = ids
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ValueError(f"the trained size must be a positive integer, got {size!r}")
        doc["size"] = size
    eps = _bn_eps(model)
    if eps is not None:
        doc["bn_eps"] = eps
    form = rep_form_of(model)
    if form != DEFAULT_FORM:  # left out otherwise, as in every checkpoint written before there was a choice
        doc["rep_form"] = form
    qat = fake_quant_form(model)
    if qat is not None:
        doc["qat"] = qat
    doc[HASH_KEY] = content_hash(doc)
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
    except MemoryError:
        raise  # the machine, not the file: the CLI reports it
    except Exception as err:  # noqa: BLE001 - a damaged zip or pickle raises almost any type
        text = str(err).strip()
        first = f"{err.__class__.__name__}: {text.splitlines()[0]}" if text else err.__class__.__name__
        raise UserError(source, "", f"not a readable tinynas checkpoint, or a damaged one ({first[:200]})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UserError(source, "format", f"not a tinynas detector checkpoint (expected format {FORMAT!r})")
    if doc.get("version") != VERSION:
        raise UserError(source, "version", f"unsupported checkpoint version {doc.get('version')!r}")
    _verify(doc, source)
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
    ids = doc.get("category_ids")
    if ids is not None and (not isinstance(ids, list) or len(ids) != len(names) or len(set(ids)) != len(ids)
                            or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)):
        raise UserError(source, "category_ids", f"expected {len(names)} distinct integer category ids")
    size = doc.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
        raise UserError(source, "size", f"expected a positive integer input size, got {size!r}")
    form = doc.get("rep_form", DEFAULT_FORM)
    if form not in REP_FORMS:
        raise UserError(source, "rep_form", f"expected one of {', '.join(REP_FORMS)}, got {form!r}")
    qat = doc.get("qat")
    if qat is not None and (qat not in ACTIVATION_FORMS or not doc.get("fused", False)):
        raise UserError(source, "qat", f"expected one of {', '.join(ACTIVATION_FORMS)} on fused weights, got {qat!r}")
    return Checkpoint(recipe, [str(n) for n in names], doc["state_dict"], bool(doc.get("fused", False)),
                      doc.get("extra") or {}, None if eps is None else float(eps), ids, size, form, qat)


def resolve_size(trained: int | None, given: int | None, source: str, default: int = DEFAULT_SIZE) -> int:
    """The input size to run a model at: ``given`` when the user gave one, else the size it was
    ``trained`` at, else ``default``. A given size that differs from the trained one is allowed
    (a model often runs well a little larger) but said in one line on stderr, naming ``source``."""
    if given is None:
        return default if trained is None else trained
    if trained is not None and given != trained:
        print(f"note: {source} was trained at {trained} px; running at --size {given}", file=sys.stderr)
    return given


def _verify(doc: dict, source: str) -> None:
    unknown = sorted(str(k) for k in doc if k not in KNOWN_KEYS)
    if unknown:  # a flipped byte in a key's name makes one, the hash's own key included
        raise UserError(source, unknown[0], "unexpected key: the file is damaged or not written by tinynas")
    if HASH_KEY not in doc:
        return  # written before checkpoints were hashed
    stored = doc.pop(HASH_KEY)
    try:
        actual = content_hash(doc)
    except TypeError as err:
        raise UserError(source, HASH_KEY, f"cannot verify the content ({err})") from None
    if stored != actual:
        raise UserError(source, HASH_KEY, "the content does not match its hash: the file is damaged "
                                          "(copy it again, or use another checkpoint)")


def load_detector(path: str | os.PathLike, recipe: ModelRecipe | None = None) -> tuple[Detector, list[str]]:
    """The detector and class names stored in ``path``.

    With ``recipe``, the checkpoint must describe the same number of classes; the
    checkpoint's own architecture is used (the weights only fit that one).
    """
    model, ckpt = load_detector_checkpoint(path, recipe)
    return model, ckpt.class_names


def load_detector_checkpoint(path: str | os.PathLike, recipe: ModelRecipe | None = None) -> tuple[Detector, Checkpoint]:
    """As :func:`load_detector`, with the whole :class:`Checkpoint` (class names, category ids...)."""
    ckpt = load_checkpoint(path)
    if recipe is not None and recipe.head.num_classes != ckpt.recipe.head.num_classes:
        raise UserError(str(path), "head.num_classes",
                        f"the checkpoint has {ckpt.recipe.head.num_classes} classes but the recipe "
                        f"has {recipe.head.num_classes}")
    try:
        return ckpt.build(), ckpt
    except UserError as err:
        raise UserError(str(path), err.field, err.reason) from None
