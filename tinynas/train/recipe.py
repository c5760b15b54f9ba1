"""Training recipes: the model sections plus ``data``, ``train``, ``augment``, ``eval``, ``distill``.

A recipe names its model either inline (``backbone``/``neck``/``head``, as model recipes do)
or by reference (``model: damoyolo-t`` or a path). Each section is described once, with its
ranges and help, and read by the config layer (``tinynas/config.py``). Command-line
``key=value`` overrides use dotted paths (``train.epochs=10``) and YAML scalars; they are
applied to the document before validation, so a bad override is refused like a bad file, and
the error names the command line.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import ClassVar, Literal, Sequence, get_args

from ..config import AUTO, Auto, Overrides, Setting, Source, as_source, read_section, read_value, setting, unknown_key
from ..data.cache import CACHE_MODES
from ..data.pipeline import AugmentConfig
from ..detect.model_recipe import ModelRecipe, check_input_size, load_model_recipe, parse_model_recipe
from ..errors import UserError
from ..renamed import renamed_keys
from ..fileio import read_yaml
from ..runfolder import plain_name, run_dir_for
from .assigners import ASSIGNERS
from .box_losses import BOX_LOSSES
from .cls_losses import CLS_LOSSES
from .composed_loss import LossOptions

TOP_KEYS = {"name", "model", "backbone", "neck", "head", "data", "train", "augment", "eval", "distill", "quant",
            "out"}
Optimizer = Literal["auto", "sgd", "adamw"]
RepForm = Literal["branches", "plain", "scaled"]
OPTIMIZERS = get_args(Optimizer)[1:]
DistillMethod = Literal["cwd", "mimic", "mgd", "self", "logit"]
DISTILL_METHODS = get_args(DistillMethod)
HEAD_METHODS = ("self", "logit")
# Probabilities, thresholds, decays and shares live in [0, 1]; anything else numeric only has
# to be >= 0 unless it says otherwise.
UNIT = "[0, 1]"
NON_NEGATIVE = "[0, inf)"
POSITIVE = "(0, inf)"
AT_LEAST_ONE = "[1, inf)"


@dataclass(frozen=True)
class DataConfig:
    train_images: str = setting(help="folder of the training images")
    train_annotations: str = setting(help="COCO JSON of the training images")
    val_images: str = setting(help="folder of the validation images")
    val_annotations: str = setting(help="COCO JSON of the validation images")
    size: int = setting(640, unit="pixels", help="square input size; a multiple of the deepest stride")
    workers: int = setting(0, bounds=NON_NEGATIVE, help="data loader processes")
    cache: str = setting("auto", choices=CACHE_MODES,
                         help="decoded images in memory: auto (when they fit) | ram | none")


@dataclass(frozen=True)
class TrainConfig:
    """``auto`` values are chosen per run from its length, batch and data (see ``auto.py``);
    the COCO recipes state DAMO-YOLO's values instead."""

    epochs: int = setting(300, bounds=AT_LEAST_ONE)
    batch_size: int = setting(64, bounds=AT_LEAST_ONE, unit="images", help="images per step, all devices")
    optimizer: Optimizer = setting(AUTO, help="auto | sgd (Nesterov) | adamw")
    rep_form: RepForm = setting("branches", help="how RepConv units train: branches (RepVGG) | plain (the deploy "
                                                 "conv + BN under RepOptimizer's multipliers) | scaled (branches x "
                                                 "trainable factors: RepOptimizer's hyper-search)")
    repopt_scales: str = setting("", help="rep_form plain: the checkpoint of a rep_form=scaled run whose factors "
                                          "set RepOptimizer's multipliers; empty: every factor 1")
    lr_per_64: float | Auto = setting(AUTO, bounds=POSITIVE,
                                      help="the lr for 64 images a step, scaled linearly to the batch")
    momentum: float = setting(0.9, bounds="[0, 1)", help="SGD's momentum, AdamW's beta1")
    weight_decay: float = setting(5e-4, bounds="[0, 1)")
    warmup_epochs: float | Auto = setting(AUTO, bounds=NON_NEGATIVE, unit="epochs")
    warmup_bias_lr: float | Auto = setting(AUTO, bounds=UNIT,
                                           help="biases start at this lr and fall to the lr; 0: off")
    min_lr_ratio: float = setting(0.05, bounds=UNIT, help="the final lr as a share of the peak")
    ema_decay: float | Auto = setting(AUTO, bounds="[0, 1)")
    ema_ramp: float | Auto = setting(AUTO, bounds=NON_NEGATIVE, unit="iterations")
    grad_clip: float = setting(0.0, bounds=NON_NEGATIVE, help="gradient norm limit; 0: off")
    seed: int = setting(0, bounds=NON_NEGATIVE)
    init: str = setting("", help="fine-tune: start from this tinynas checkpoint's weights (every tensor of the "
                                 "same name and shape; class rows matched by class name); empty: from scratch")
    eval_interval: int = setting(1, bounds=AT_LEAST_ONE, unit="epochs")
    tensorboard: bool = setting(False, help="also log every metrics.csv column to RUN/tensorboard (needs the "
                                            "tensorboard package)")
    device: str = setting("auto", help="auto | cpu | cuda | cuda:N")
    amp: bool = setting(True, help="mixed precision; only takes effect on CUDA")
    bn_eps: float = setting(1e-3, bounds="(0, 1]")
    bn_momentum: float = setting(0.03, bounds="(0, 1]")
    # The detection loss's parts (train/composed_loss.py); the defaults are DAMO-YOLO's.
    assigner: str = setting("alignota", choices=tuple(ASSIGNERS),
                            help="label assignment: alignota (DAMO-YOLO) | simota (YOLOX) | tal (YOLOv6, TOOD)")
    cls_loss: str = setting("qfl", choices=tuple(CLS_LOSSES), help="class loss: qfl | vfl | bce")
    box_loss: str = setting("giou", choices=tuple(BOX_LOSSES), help="box loss: giou | ciou | siou")
    dfl: bool | Auto = setting(AUTO, help="distribution focal loss on the box bins; auto: on when the head "
                                          "has them (reg_max > 0)")

    def loss_options(self, reg_max: int) -> LossOptions:
        """The loss's parts for a head with ``reg_max`` bins (``dfl: auto`` resolved against it)."""
        dfl = reg_max > 0 if self.dfl == AUTO else self.dfl
        return LossOptions(self.assigner, self.cls_loss, self.box_loss, dfl)


@dataclass(frozen=True)
class EvalConfig:
    # The names of predict's and export's flags (--conf, --iou, --max-det).
    RENAMED_KEYS: ClassVar[dict[str, str]] = renamed_keys({"conf_threshold": "conf", "iou_threshold": "iou",
                                                           "max_detections": "max_det"})

    conf: float = setting(0.001, bounds=UNIT, help="score threshold of the detections scored")
    iou: float = setting(0.7, bounds=UNIT, help="NMS IoU threshold")
    max_det: int = setting(100, bounds=AT_LEAST_ONE, help="detections kept per image")
    batch_size: int = setting(8, bounds=AT_LEAST_ONE, unit="images")


@dataclass(frozen=True)
class DistillConfig:
    teacher: str = setting("", help="checkpoint path; empty means no distillation")
    # cwd | mimic | mgd on neck features; self | logit on head outputs (YOLOv6's loss: "self" for a
    # trained copy of the student, "logit" for any teacher with the same head geometry)
    method: DistillMethod = "cwd"
    # auto: grad_ratio below, kept as training goes (tinynas/distill/auto_weight.py); a number is fixed
    loss_weight: float | Auto = setting(AUTO, bounds=NON_NEGATIVE)
    # The distillation gradient on the shared tensors, as a fraction of the detection loss's, that
    # auto aims for. 0.66 is the best measured hand-set weight as a ratio: CWD at 0.02 on a tiny
    # student, whose gradient at weight 1 is ~33x the detection loss's at the start (0.02 x 33);
    # 0.01 (0.33) and 0.05 (1.65) both did worse there.
    grad_ratio: float = setting(0.66, bounds=POSITIVE)
    # With auto: the teacher's lead over the student in fitting the training batch (both models'
    # best score x IoU per object, tinynas/distill/worth.py) that earns the full weight; less lead
    # scales it down, none switches distillation off. 0: the weight ignores what the teacher is worth.
    worth_margin: float = setting(0.2, bounds=NON_NEGATIVE)
    tau: float = setting(1.0, bounds=POSITIVE, help="softmax temperature")
    weight_start: float = setting(1.0, bounds=UNIT)
    weight_end: float = setting(0.1, bounds=UNIT)
    # distill/schedule.py's SHAPES, spelled out: training does not import distillation.
    weight_shape: Literal["cosine", "linear", "constant"] = setting("cosine", help="how the weight falls over the run")
    off_in_no_aug: bool = setting(False, help="the paper switches distillation off for the final epochs")


@dataclass(frozen=True)
class QuantConfig:
    """Quantization-aware training (``nn/fake_quant.py``): the fused model fine-tuned with int8
    simulated on every conv, from ``train.init`` (default: ``distill.teacher``, its own float self)."""

    qat: bool = setting(False, help="simulate int8 in training (fine-tunes a trained float checkpoint)")
    activations: Literal["uint8", "int8"] = setting("uint8", help="the activation form simulated, as export's "
                                                                  "--activations")
    momentum: float = setting(0.01, bounds="(0, 1]", help="how fast the observed activation ranges follow "
                                                          "each batch's (torch's MovingAverageMinMaxObserver)")


@dataclass(frozen=True)
class TrainRecipe:
    name: str
    model: ModelRecipe
    data: DataConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
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
        doc["quant"] = asdict(self.quant)
        doc["out"] = self.out
        return doc

    @property
    def run_dir(self) -> Path:
        return run_dir_for("train", self.name, self.out)


def parse_train_recipe(doc: object, source: str | Source = "<recipe>", base_dir: Path | None = None) -> TrainRecipe:
    """Validate a training recipe document; ``source`` names the file (and any overrides)."""
    src = as_source(source)
    if not isinstance(doc, dict):
        raise src.error("", "a recipe must be a YAML mapping")
    for key in doc:
        if key not in TOP_KEYS:
            raise src.error(str(key), unknown_key("section", key, sorted(TOP_KEYS)))
    if "model" in doc:
        if any(k in doc for k in ("backbone", "neck", "head")):
            raise src.error("model", "give either model: <recipe> or backbone/neck/head, not both")
        ref = doc["model"]
        if not isinstance(ref, str):
            raise src.error("model", "expected a model recipe path or shipped name")
        path = Path(ref)
        if base_dir is not None and not path.is_absolute() and (base_dir / path).is_file():
            ref = str(base_dir / path)
        model = load_model_recipe(ref)
        from_reference = True
    else:
        model = parse_model_recipe(doc, src, base_dir)
        from_reference = False

    data = read_section(DataConfig, doc.get("data"), src, "data")
    if base_dir is not None:
        data = DataConfig(**{k: _relative(v, base_dir) if k.endswith(("_images", "_annotations")) else v
                             for k, v in asdict(data).items()})
    check_input_size(model, data.size, src.of("data.size"), "data.size")
    train = read_section(TrainConfig, doc.get("train"), src, "train")
    train = replace(train, device=_device_name(train.device, src),
                    init=_relative(train.init, base_dir) if train.init and base_dir is not None else train.init)
    train = _check_repopt(train, src, base_dir)
    if train.dfl is True and model.head.reg_max == 0:
        raise src.error("train.dfl", f"the {model.head.type} head has reg_max 0 (boxes as distances, no DFL bins): "
                                     "set train.dfl: false or auto, or give the head reg_max > 0")
    evaluation = read_section(EvalConfig, doc.get("eval"), src, "eval")
    distill = read_section(DistillConfig, doc.get("distill"), src, "distill")
    quant = read_section(QuantConfig, doc.get("quant"), src, "quant")
    if quant.qat and train.rep_form == "scaled":
        raise src.error("quant.qat", "simulates the fused model, not a hyper-search (train.rep_form=scaled)")
    augment = AugmentConfig.from_dict(doc.get("augment"), src)
    name = read_value(doc.get("name") or model.name or "run", str, Setting(), src, "name")
    out = read_value(doc.get("out") or "", str, Setting(), src, "out")
    # The name becomes runs/<name> when there is no ``out``: it must stay inside runs/.
    name = plain_name(name, src.of("name"), "name")
    return TrainRecipe(name, model, data, train, augment, evaluation, distill, quant, out, from_reference)


def _check_repopt(train: TrainConfig, src: Source, base_dir: Path | None) -> TrainConfig:
    """RepOptimizer's factors are read only when the units train plain."""
    if train.repopt_scales and train.rep_form != "plain":
        raise src.error("train.repopt_scales", f"only train.rep_form=plain (RepOptimizer) reads it; this run's "
                                               f"units train as {train.rep_form}")
    scales = train.repopt_scales
    if scales and base_dir is not None:
        scales = _relative(scales, base_dir)
    return replace(train, repopt_scales=scales)


def _device_name(text: str, src: Source) -> str:
    """``train.device`` as torch spells it (``CPU`` is ``cpu``); what torch would take but a
    trainer cannot train on (``meta``, ``xla``, ``mps``, a typo) is refused here, naming the file."""
    name = text.strip().lower()
    if name in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", name):
        return name
    raise src.error("train.device", f"expected auto, cpu, cuda or cuda:N (N a GPU index), got {text!r}")


def _relative(value: str, base_dir: Path) -> str:
    path = Path(value)
    if path.is_absolute() or path.exists():
        return value
    candidate = base_dir / path
    return str(candidate) if candidate.exists() else value


def load_train_recipe(path: str | os.PathLike, overrides: Sequence[str] | Overrides = ()) -> TrainRecipe:
    """Read a recipe file, apply ``key=value`` overrides (``train.epochs=10``), validate it."""
    source = str(path)
    doc = read_yaml(path, "recipe file")
    if not isinstance(overrides, Overrides):
        overrides = Overrides.parse(overrides)
    if overrides:
        if not isinstance(doc, dict):
            raise UserError(source, "", "a recipe must be a YAML mapping")
        doc = overrides.apply(doc, source)
    return parse_train_recipe(doc, Source(source, overrides), Path(path).parent)
