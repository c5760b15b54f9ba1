"""The model section of a recipe: ``backbone``, ``neck`` and ``head``, validated into values.

A recipe file may hold other sections (training, data, distillation) that other parts of
tinynas read; this module reads only the three model sections and ``name``. ``to_dict()``
gives the *resolved* form (the architecture inline, output indices explicit, the neck and
head types named), which is what a checkpoint stores so it can be rebuilt without the
files the recipe pointed to.

``backbone.wrap`` (res | csp | efficientrep), ``neck.type`` (``detect.necks.NECKS``) and
``head.type`` (``detect.heads.HEADS``) choose the parts; each neck and head type takes its
own options (``part_config.py``). A recipe or checkpoint without a ``type`` is DAMO-YOLO's
giraffe neck and zero head, as before there was a choice.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, get_args

import torch
import yaml

from ..arch import ACTIVATIONS, Arch, arch_from_dicts
from ..archio import load_arch
from ..config import AUTO, Auto, Setting, Source, as_source, read_section, read_value, setting
from ..errors import UserError
from ..resources import ARCH_DIR, ARCH_SUFFIXES, PROJECT_ROOT, resolve_file
from ..nn.wrap_csp import csp_stages, default_csp_outputs
from ..nn.wrap_res import default_res_outputs
from .heads import HEADS, create_head
from .necks import NECKS, create_neck
from .part_config import part_options, part_to_dict, read_part_section

MODEL_DIR = PROJECT_ROOT / "recipes" / "models"
Wrap = Literal["res", "csp", "efficientrep"]
WRAPS = get_args(Wrap)
IMAGE_CHANNELS = 3
AT_LEAST_ONE = "[1, inf)"


@dataclass(frozen=True)
class BackboneConfig:
    arch: Arch = setting(help="an architecture file, a shipped name, or a list of blocks")
    wrap: Wrap = setting("res", help="res: a feature after any block; csp: stages joined CSP-style; "
                                     "efficientrep: YOLOv6's RepVGG stages")
    # Read as "auto" (or left out): the wrap's own choice, resolved by parse_model_recipe. Four
    # levels (the finest at stride 4) are read apart, for the reppan neck's BiC merges.
    out_indices: tuple[int, ...] | Auto = setting((), bounds="[0, inf)", length=3,
                                                  help="the levels feeding the neck (0 is the stem): three, "
                                                       "or four for reppan's BiC")
    focus: bool = setting(True, help="a space-to-depth stem (the architecture reads 12 channels)")
    spp: bool = setting(True, help="spatial pyramid pooling after the last level")
    act: str = setting("relu", choices=ACTIVATIONS)
    reparam: bool = setting(True, help="RepConv branches, fused for deployment")
    csp_stack: bool = setting(False, help="efficientrep only: each stage's units as one CSPStackRep "
                                          "(YOLOv6-M/L) instead of RepBlocks (N/S)")


# A part's type-specific options that differ from its class's defaults: ((keyword, value), ...)
# in its signature's order.
PartOptions = tuple[tuple[str, object], ...]


@dataclass(frozen=True)
class NeckConfig:
    out_channels: tuple[int, int, int] = setting((64, 128, 256), bounds=AT_LEAST_ONE)
    depth: float = setting(1.0, bounds="(0, inf)", help="a multiplier of the neck's published depth")
    hidden_ratio: float = setting(1.0, bounds="(0, inf)", help="giraffe: hidden channels as a share of the output")
    act: str = setting("relu", choices=ACTIVATIONS)
    type: str = setting("giraffe", choices=NECKS.names(), help="the neck (detect/necks)")
    options: PartOptions = setting((), help="the type's other keywords")


@dataclass(frozen=True)
class HeadConfig:
    num_classes: int = setting(80, bounds=AT_LEAST_ONE)
    reg_max: int = setting(16, bounds="[0, inf)", help="DFL bins per box side; 0: the four distances directly")
    strides: tuple[int, ...] = setting((8, 16, 32), bounds=AT_LEAST_ONE, length=3, unit="pixels")
    type: str = setting("zero", choices=HEADS.names(), help="the head (detect/heads)")
    options: PartOptions = setting((), help="the type's other keywords")


@dataclass(frozen=True)
class ModelRecipe:
    backbone: BackboneConfig
    neck: NeckConfig = field(default_factory=NeckConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    name: str = ""

    def to_dict(self) -> dict:
        b, n, h = self.backbone, self.neck, self.head
        return {
            "name": self.name,
            "backbone": {"arch": b.arch.to_dicts(), "wrap": b.wrap, "out_indices": list(b.out_indices),
                         "focus": b.focus, "spp": b.spp, "act": b.act, "reparam": b.reparam,
                         **({"csp_stack": b.csp_stack} if b.wrap == "efficientrep" else {})},
            "neck": part_to_dict(n, NECKS, {"out_channels": list(n.out_channels)}),
            "head": part_to_dict(h, HEADS, {"num_classes": h.num_classes, "reg_max": h.reg_max,
                                            "strides": list(h.strides)}),
        }

    @property
    def stride(self) -> int:
        """The deepest feature stride: input sizes must be multiples of it."""
        return max(self.head.strides)

    def with_num_classes(self, num_classes: int) -> "ModelRecipe":
        return replace(self, head=replace(self.head, num_classes=num_classes))


def check_input_size(recipe: ModelRecipe, size: int, source: str = "--size", field: str = "") -> int:
    """``size`` if the detector accepts ``size x size`` inputs, else a ``UserError``.

    The neck upsamples each level by 2 and joins it with the level above, which matches
    only when every stride divides the input: 33 gives 17, 9 and 5, and 2 x 5 is not 9.
    """
    stride = recipe.stride
    if not isinstance(size, int) or isinstance(size, bool) or size < stride or size % stride:
        near = max(stride, round(size / stride) * stride) if isinstance(size, (int, float)) else stride
        raise UserError(source, field, f"must be a multiple of {stride} (the detector's deepest stride), "
                                       f"got {size!r}; {near} is the nearest")
    return size


def resolve_model_path(text: str) -> Path:
    """A recipe path, or the name of a shipped model recipe such as ``damoyolo-s``."""
    return resolve_file(text, MODEL_DIR, (".yaml", ".yml"), "model recipe")


def load_model_recipe(text: str | os.PathLike) -> ModelRecipe:
    """Read a recipe file (or shipped name) and validate its model sections."""
    path = resolve_model_path(str(text))
    source = str(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "yaml"
        raise UserError(source, where, f"malformed YAML: {getattr(err, 'problem', None) or err}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(source, "", f"cannot read: {err}") from None
    return parse_model_recipe(doc, source, path.parent)


def _read_arch(value: object, source: str, base_dir: Path | None) -> Arch:
    where = "backbone.arch"
    if isinstance(value, (list, dict)):
        blocks = value["blocks"] if isinstance(value, dict) and "blocks" in value else value
        try:
            return arch_from_dicts(blocks, source)
        except UserError as err:
            raise UserError(source, f"{where}.{err.field}", err.reason) from None
    if not isinstance(value, str) or not value:
        raise UserError(source, where, "expected an architecture file, a shipped name or a list of blocks")
    if base_dir is not None and (base_dir / value).is_file():
        return load_arch(base_dir / value)
    try:
        return load_arch(resolve_file(value, ARCH_DIR, ARCH_SUFFIXES, "architecture"))
    except UserError as err:
        if err.source == value and not err.field:
            raise UserError(source, where, f"{value!r}: {err.reason}") from None
        raise


def _stage_ends(arch: Arch, wrap: str) -> list[int]:
    """The block each backbone output index ends at: every block (res), or each stage's last."""
    if wrap == "res":
        return list(range(len(arch.blocks)))
    return [0] + [group[-1] for group in csp_stages(arch)]


def output_strides(arch: Arch, wrap: str, focus: bool, out_indices: tuple[int, ...]) -> tuple[int, ...]:
    """The input-to-feature stride of each selected backbone output."""
    strides, total = [], 1
    for i, spec in enumerate(arch.blocks):
        total *= 2 if (i == 0 and focus) else spec.stride
        strides.append(total)
    ends = _stage_ends(arch, wrap)
    return tuple(strides[ends[i]] for i in out_indices)


def output_channels(arch: Arch, wrap: str, out_indices: tuple[int, ...]) -> tuple[int, ...]:
    """The width of each selected backbone output (every wrap keeps its block's width)."""
    ends = _stage_ends(arch, wrap)
    return tuple(arch.blocks[ends[i]].out_channels for i in out_indices)


def neck_levels(neck: NeckConfig) -> int:
    """How many backbone levels the neck type can read: 3, or 4 (a stride-4 level too)."""
    return getattr(NECKS.lookup(neck.type), "max_levels", 3)


def _four_out_indices(value: object, src: Source) -> tuple[int, ...] | None:
    """Four explicit ``backbone.out_indices``, read apart from the field's usual three."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or len(items) != 4:
        return None
    return read_value(value, tuple[int, ...], Setting(bounds="[0, inf)", length=4), src, "backbone.out_indices")


def _check_builds(backbone: BackboneConfig, neck: NeckConfig, head: HeadConfig, src: Source) -> None:
    """Build the neck and head on the meta device (nothing allocated): what their classes refuse
    (asff_sim's output widths that do not double), or a layer left with no channels by small
    widths, is a line naming the section."""
    channels = output_channels(backbone.arch, backbone.wrap, backbone.out_indices)
    builds = (("neck", neck.type, lambda: create_neck(neck.type, channels, neck.out_channels,
                                                       **part_options(neck, NECKS))),
              ("head", head.type, lambda: create_head(head.type, neck.out_channels, head.num_classes, head.reg_max,
                                                      head.strides, **part_options(head, HEADS))))
    for section, type_name, build in builds:
        with torch.device("meta"), warnings.catch_warnings():
            # torch warns that a zero-size tensor's init does nothing; the check below says it better.
            warnings.simplefilter("ignore", UserWarning)
            try:
                part = build()
            except ValueError as err:
                raise src.error(section, f"the {type_name} {section} cannot be built: {err}") from None
        empty = next((name for name, p in part.named_parameters() if p.numel() == 0), None)
        if empty is not None:
            raise src.error(section, f"the {type_name} {section} would have a layer with no channels ({empty}): "
                                     "its widths are too small for its ratios")


def parse_model_recipe(doc: object, source: str | Source = "<recipe>", base_dir: Path | None = None) -> ModelRecipe:
    """Validate the model sections of a recipe document (other top-level sections are left alone)."""
    src = as_source(source)
    if not isinstance(doc, dict):
        raise src.error("", "a recipe must be a YAML mapping")
    for section in ("backbone", "head"):
        if section not in doc:
            raise src.error(section, "missing")
    raw = doc["backbone"]
    if not isinstance(raw, dict):
        raise src.error("backbone", "expected a mapping")
    if raw.get("arch") is None:
        raise src.error("backbone.arch", "missing")
    arch = _read_arch(raw["arch"], src.of("backbone.arch"), base_dir)
    extra: dict[str, object] = {"arch": arch}
    four = _four_out_indices(raw.get("out_indices"), src)
    if four is not None:
        extra["out_indices"] = four
    backbone = read_section(BackboneConfig, raw, src, "backbone", extra=extra)
    stem_in = arch.in_channels
    if backbone.focus and stem_in not in (IMAGE_CHANNELS, 4 * IMAGE_CHANNELS):
        raise src.error("backbone.focus", f"a Focus stem needs the architecture's stem to read {IMAGE_CHANNELS} "
                                          f"or {4 * IMAGE_CHANNELS} channels, it reads {stem_in}")
    if not backbone.focus and stem_in != IMAGE_CHANNELS:
        raise src.error("backbone.focus", f"the stem reads {stem_in} channels, images have {IMAGE_CHANNELS}: "
                                          "set focus: true")
    wrap = backbone.wrap
    if backbone.csp_stack and wrap != "efficientrep":
        raise src.error("backbone.csp_stack", f"only the efficientrep wrap stacks its units; this recipe's wrap is {wrap}")
    neck = read_part_section(NeckConfig, NECKS, doc.get("neck"), src, "neck", "giraffe")
    head = read_part_section(HeadConfig, HEADS, doc["head"], src, "head", "zero")
    count = len(_stage_ends(arch, wrap))
    out_indices = backbone.out_indices
    if out_indices in ((), AUTO):
        out_indices = default_res_outputs(arch) if wrap == "res" else default_csp_outputs(arch)
    if len(out_indices) < 3:
        raise src.error("backbone.out_indices", f"the neck needs three backbone levels; this architecture has {count}")
    if len(out_indices) > neck_levels(neck):
        raise src.error("backbone.out_indices", f"the {neck.type} neck reads three levels, got {len(out_indices)} "
                                                "(four feed only reppan's BiC merges)")
    if any(i >= count for i in out_indices) or list(out_indices) != sorted(set(out_indices)):
        raise src.error("backbone.out_indices", f"expected {len(out_indices)} increasing indices below {count} "
                                                f"({'blocks' if wrap == 'res' else 'stages'}), got {list(out_indices)}")
    backbone = replace(backbone, out_indices=tuple(out_indices))
    actual = output_strides(arch, wrap, backbone.focus, backbone.out_indices)
    if actual[-3:] != head.strides:
        raise src.error("head.strides", f"the backbone outputs are at strides {list(actual[-3:])}, "
                                        f"the head expects {list(head.strides)}")
    if any(b != 2 * a for a, b in zip(actual, actual[1:])):
        field = "head.strides" if len(actual) == 3 else "backbone.out_indices"
        raise src.error(field, f"each level must halve the previous one, got {list(actual)}")
    _check_builds(backbone, neck, head, src)
    name = read_value(doc.get("name") or "", str, Setting(), src, "name")
    return ModelRecipe(backbone, neck, head, name)
