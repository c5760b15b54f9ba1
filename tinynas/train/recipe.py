"""Training recipes: the model sections plus ``data``, ``train``, ``augment``, ``eval``, ``distill``.

A recipe names its model either inline (``backbone``/``neck``/``head``, as model recipes do)
or by reference (``model: damoyolo-t`` or a path). Command-line ``key=value`` overrides use
dotted paths (``train.epochs=10``) and YAML scalars; they are applied to the document before
validation, so a bad override is reported like a bad file.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import yaml

from ..data.cache import CACHE_MODES
from ..data.pipeline import AugmentConfig
from ..detect.recipe import ModelRecipe, check_input_size, load_model_recipe, parse_model_recipe
from ..bounds import check_range
from ..errors import UserError
from ..fileio import check_nesting, read_yaml
from ..runfolder import plain_name

TOP_KEYS = {"name", "model", "backbone", "neck", "head", "data", "train", "augment", "eval", "distill", "out"}


@dataclass(frozen=True)
class DataConfig:
    train_images: str
    train_annotations: str
    val_images: str
    val_annotations: str
    size: int = 640
    workers: int = 0
    cache: str = "auto"  # decoded images in memory: auto (when they fit) | ram | none


AUTO = "auto"
OPTIMIZERS = ("sgd", "adamw")


@dataclass(frozen=True)
class TrainConfig:
    """``auto`` values are chosen per run from its length, batch and data (see ``auto.py``);
    the COCO recipes state DAMO-YOLO's values instead."""

    epochs: int = 300
    batch_size: int = 64
    optimizer: str = AUTO  # auto | sgd (Nesterov) | adamw
    lr_per_64: float | str = AUTO  # the lr for 64 images a step, scaled linearly to the batch
    momentum: float = 0.9  # SGD's momentum, AdamW's beta1
    weight_decay: float = 5e-4
    warmup_epochs: float | str = AUTO
    warmup_bias_lr: float | str = AUTO  # biases start at this lr and fall to the lr; 0: off
    min_lr_ratio: float = 0.05
    ema_decay: float | str = AUTO
    ema_ramp: float | str = AUTO
    grad_clip: float = 0.0  # 0: off
    seed: int = 0
    eval_interval: int = 1
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # only takes effect on CUDA
    bn_eps: float = 1e-3
    bn_momentum: float = 0.03


@dataclass(frozen=True)
class EvalConfig:
    conf_threshold: float = 0.001
    iou_threshold: float = 0.7
    max_detections: int = 100
    batch_size: int = 8


DISTILL_METHODS = ("cwd", "mimic", "mgd", "self", "logit")
HEAD_METHODS = ("self", "logit")


@dataclass(frozen=True)
class DistillConfig:
    teacher: str = ""  # checkpoint path; empty means no distillation
    # cwd | mimic | mgd on neck features; self | logit on head outputs (YOLOv6's loss: "self" for a
    # trained copy of the student, "logit" for any teacher with the same head geometry)
    method: str = "cwd"
    # auto: grad_ratio below, kept as training goes (tinynas/distill/auto_weight.py); a number is fixed
    loss_weight: float | str = AUTO
    # The distillation gradient on the shared tensors, as a fraction of the detection loss's, that
    # auto aims for. 0.66 is the best measured hand-set weight as a ratio: CWD at 0.02 on a tiny
    # student, whose gradient at weight 1 is ~33x the detection loss's at the start (0.02 x 33);
    # 0.01 (0.33) and 0.05 (1.65) both did worse there.
    grad_ratio: float = 0.66
    tau: float = 1.0
    weight_start: float = 1.0
    weight_end: float = 0.1
    weight_shape: str = "cosine"
    off_in_no_aug: bool = False  # the paper switches distillation off for the final epochs


@dataclass(frozen=True)
class TrainRecipe:
    name: str
    model: ModelRecipe
    data: DataConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    out: str = ""
    model_from_reference: bool = False

    def to_dict(self) -> dict:
        """The resolved recipe, self-contained (architecture inline), as written to ``recipe.yaml``."""
        doc = {"name": self.name, **{k: v for k, v in self.model.to_dict().items() if k != "name"}}
        # Absolute data paths keep the resolved recipe usable from any working directory.
        doc["data"] = {k: str(Path(v).resolve()) if k.endswith(("_images", "_annotations")) else v
                       for k, v in asdict(self.data).items()}
        doc["train"] = asdict(self.train)
        doc["augment"] = self.augment.to_dict()
        doc["eval"] = asdict(self.eval)
        doc["distill"] = asdict(self.distill)
        doc["out"] = self.out
        return doc

    @property
    def run_dir(self) -> Path:
        return Path(self.out) if self.out else Path("runs") / self.name


def apply_overrides(doc: dict, overrides: Sequence[str], source: str = "command line") -> dict:
    """``["train.epochs=10", "data.size=320"]`` applied to a copy of ``doc``."""
    doc = copy.deepcopy(doc)
    for item in overrides:
        if "=" not in item:
            raise UserError(source, item, "expected key=value")
        key, text = item.split("=", 1)
        try:
            value = check_nesting(yaml.safe_load(text), f"{source}: {key}") if text != "" else ""
        except (yaml.YAMLError, RecursionError):
            raise UserError(source, key, f"cannot read value {text[:80]!r}") from None
        parts = key.split(".")
        node = doc
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise UserError(source, key, f"{part} is not a section")
            node = child
        node[parts[-1]] = value
    return doc


# Settings whose value has a natural range (anything else numeric only has to be >= 0).
RANGES = {
    "train.lr_per_64": "(0, inf)", "train.momentum": "[0, 1)", "train.weight_decay": "[0, 1)",
    "train.min_lr_ratio": "[0, 1]", "train.ema_decay": "[0, 1)", "train.bn_eps": "(0, 1]",
    "train.bn_momentum": "(0, 1]", "train.warmup_bias_lr": "[0, 1]",
    "eval.conf_threshold": "[0, 1]", "eval.iou_threshold": "[0, 1]",
    "eval.max_detections": "[1, inf)", "eval.batch_size": "[1, inf)",
    "distill.tau": "(0, inf)", "distill.grad_ratio": "(0, inf)",
    "distill.weight_start": "[0, 1]", "distill.weight_end": "[0, 1]",
}


def _section(doc: dict, key: str, cls: type, source: str, required: Sequence[str] = ()) -> object:
    raw = doc.get(key) or {}
    if not isinstance(raw, dict):
        raise UserError(source, key, "expected a mapping")
    defaults = {f: getattr(cls, f, None) for f in cls.__dataclass_fields__}
    values = {}
    for name, value in raw.items():
        if name not in cls.__dataclass_fields__:
            raise UserError(source, f"{key}.{name}", f"unknown option (known: {', '.join(cls.__dataclass_fields__)})")
        expected = cls.__dataclass_fields__[name].type
        values[name] = _coerce(value, expected, defaults.get(name), source, f"{key}.{name}")
        bounds = RANGES.get(f"{key}.{name}")
        if bounds and values[name] != AUTO:
            check_range(values[name], bounds, source, f"{key}.{name}")
    for name in required:
        if name not in values:
            raise UserError(source, f"{key}.{name}", "missing")
    return cls(**values)


def _coerce(value, expected, default, source: str, where: str):
    if value == AUTO and "| str" in str(expected):
        return AUTO
    kind = type(default) if default is not None else str
    if "int" in str(expected) and "float" not in str(expected):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UserError(source, where, f"expected a non-negative integer, got {value!r}")
        return value
    if "float" in str(expected):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            allowed = "auto or a non-negative number" if "| str" in str(expected) else "a non-negative number"
            raise UserError(source, where, f"expected {allowed}, got {value!r}")
        return float(value)
    if "bool" in str(expected):
        if not isinstance(value, bool):
            raise UserError(source, where, f"expected true or false, got {value!r}")
        return value
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise UserError(source, where, f"expected text, got {value!r}")
    return str(value) if kind is str else value


def parse_train_recipe(doc: object, source: str = "<recipe>", base_dir: Path | None = None) -> TrainRecipe:
    if not isinstance(doc, dict):
        raise UserError(source, "", "a recipe must be a YAML mapping")
    for key in doc:
        if key not in TOP_KEYS:
            raise UserError(source, str(key), f"unknown section (known: {', '.join(sorted(TOP_KEYS))})")
    if "model" in doc:
        if any(k in doc for k in ("backbone", "neck", "head")):
            raise UserError(source, "model", "give either model: <recipe> or backbone/neck/head, not both")
        ref = doc["model"]
        if not isinstance(ref, str):
            raise UserError(source, "model", "expected a model recipe path or shipped name")
        path = Path(ref)
        if base_dir is not None and not path.is_absolute() and (base_dir / path).is_file():
            ref = str(base_dir / path)
        model = load_model_recipe(ref)
        from_reference = True
    else:
        model = parse_model_recipe(doc, source, base_dir)
        from_reference = False

    data = _section(doc, "data", DataConfig, source,
                    required=("train_images", "train_annotations", "val_images", "val_annotations"))
    if base_dir is not None:
        data = DataConfig(**{k: _relative(v, base_dir) if k.endswith(("_images", "_annotations")) else v
                             for k, v in asdict(data).items()})
    check_input_size(model, data.size, source, "data.size")
    if data.cache not in CACHE_MODES:
        raise UserError(source, "data.cache", f"expected one of {', '.join(CACHE_MODES)}, got {data.cache!r}")
    train = _section(doc, "train", TrainConfig, source)
    if train.epochs < 1 or train.batch_size < 1 or train.eval_interval < 1:
        raise UserError(source, "train", "epochs, batch_size and eval_interval must be at least 1")
    if train.optimizer not in (AUTO, *OPTIMIZERS):
        raise UserError(source, "train.optimizer", f"unknown optimizer {train.optimizer!r} "
                        f"(known: {AUTO}, {', '.join(OPTIMIZERS)})")
    evaluation = _section(doc, "eval", EvalConfig, source)
    distill = _section(doc, "distill", DistillConfig, source)
    if distill.method not in DISTILL_METHODS:
        raise UserError(source, "distill.method", f"unknown method {distill.method!r} "
                        f"(known: {', '.join(DISTILL_METHODS)})")
    augment = AugmentConfig.from_dict(doc.get("augment"), source)
    name = doc.get("name") or model.name or "run"
    out = doc.get("out") or ""
    if not isinstance(name, str) or not isinstance(out, str):
        raise UserError(source, "name", "name and out must be text")
    # The name becomes runs/<name> when there is no ``out``: it must stay inside runs/.
    name = plain_name(name, source, "name")
    return TrainRecipe(name, model, data, train, augment, evaluation, distill, out, from_reference)


def _relative(value: str, base_dir: Path) -> str:
    path = Path(value)
    if path.is_absolute() or path.exists():
        return value
    candidate = base_dir / path
    return str(candidate) if candidate.exists() else value


def load_train_recipe(path: str | os.PathLike, overrides: Sequence[str] = ()) -> TrainRecipe:
    source = str(path)
    doc = read_yaml(path, "recipe file")
    if overrides:
        if not isinstance(doc, dict):
            raise UserError(source, "", "a recipe must be a YAML mapping")
        doc = apply_overrides(doc, overrides)
    return parse_train_recipe(doc, source, Path(path).parent)
