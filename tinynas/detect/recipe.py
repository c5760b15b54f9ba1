"""The model section of a recipe: ``backbone``, ``neck`` and ``head``, validated into values.

A recipe file may hold other sections (training, data, distillation) that other parts of
tinynas read; this module reads only the three model sections and ``name``. ``to_dict()``
gives the *resolved* form (the architecture inline, output indices explicit), which is what
a checkpoint stores so it can be rebuilt without the files the recipe pointed to.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, get_args

import yaml

from ..arch import ACTIVATIONS, Arch, arch_from_dicts
from ..archio import load_arch
from ..config import AUTO, Auto, Setting, Source, as_source, read_section, read_value, setting
from ..errors import UserError
from ..resources import ARCH_DIR, ARCH_SUFFIXES, PROJECT_ROOT, resolve_file
from ..nn.wrap_csp import csp_stages, default_csp_outputs
from ..nn.wrap_res import default_res_outputs

MODEL_DIR = PROJECT_ROOT / "recipes" / "models"
Wrap = Literal["res", "csp"]
WRAPS = get_args(Wrap)
IMAGE_CHANNELS = 3
AT_LEAST_ONE = "[1, inf)"


@dataclass(frozen=True)
class BackboneConfig:
    arch: Arch = setting(help="an architecture file, a shipped name, or a list of blocks")
    wrap: Wrap = setting("res", help="res: a feature after any block; csp: stages joined CSP-style")
    # Read as "auto" (or left out): the wrap's own choice, resolved by parse_model_recipe.
    out_indices: tuple[int, ...] | Auto = setting((), bounds="[0, inf)", length=3,
                                                  help="the three levels feeding the neck (0 is the stem)")
    focus: bool = setting(True, help="a space-to-depth stem (the architecture reads 12 channels)")
    spp: bool = setting(True, help="spatial pyramid pooling after the last level")
    act: str = setting("relu", choices=ACTIVATIONS)
    reparam: bool = setting(True, help="RepConv branches, fused for deployment")


@dataclass(frozen=True)
class NeckConfig:
    out_channels: tuple[int, int, int] = setting((64, 128, 256), bounds=AT_LEAST_ONE)
    depth: float = setting(1.0, bounds="(0, inf)", help="a multiplier of the fusion blocks' depth")
    hidden_ratio: float = setting(1.0, bounds="(0, inf)", help="hidden channels as a share of the output")
    act: str = setting("relu", choices=ACTIVATIONS)


@dataclass(frozen=True)
class HeadConfig:
    num_classes: int = setting(80, bounds=AT_LEAST_ONE)
    reg_max: int = setting(16, bounds=AT_LEAST_ONE, help="DFL bins per box side")
    strides: tuple[int, ...] = setting((8, 16, 32), bounds=AT_LEAST_ONE, length=3, unit="pixels")


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
                         "focus": b.focus, "spp": b.spp, "act": b.act, "reparam": b.reparam},
            "neck": {"depth": n.depth, "hidden_ratio": n.hidden_ratio,
                     "out_channels": list(n.out_channels), "act": n.act},
            "head": {"num_classes": h.num_classes, "reg_max": h.reg_max, "strides": list(h.strides)},
        }

    @property
    def stride(self) -> int:
        """The deepest feature stride: input sizes must be multiples of it."""
        return max(self.head.strides)

    def with_num_classes(self, num_classes: int) -> "ModelRecipe":
        return ModelRecipe(self.backbone, self.neck, HeadConfig(num_classes, self.head.reg_max,
                                                                self.head.strides), self.name)


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


def output_strides(arch: Arch, wrap: str, focus: bool, out_indices: tuple[int, ...]) -> tuple[int, ...]:
    """The input-to-feature stride of each selected backbone output."""
    strides, total = [], 1
    for i, spec in enumerate(arch.blocks):
        total *= 2 if (i == 0 and focus) else spec.stride
        strides.append(total)
    if wrap == "res":
        return tuple(strides[i] for i in out_indices)
    ends = [0] + [group[-1] for group in csp_stages(arch)]
    return tuple(strides[ends[i]] for i in out_indices)


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
    backbone = read_section(BackboneConfig, raw, src, "backbone", extra={"arch": arch})
    stem_in = arch.in_channels
    if backbone.focus and stem_in not in (IMAGE_CHANNELS, 4 * IMAGE_CHANNELS):
        raise src.error("backbone.focus", f"a Focus stem needs the architecture's stem to read {IMAGE_CHANNELS} "
                                          f"or {4 * IMAGE_CHANNELS} channels, it reads {stem_in}")
    if not backbone.focus and stem_in != IMAGE_CHANNELS:
        raise src.error("backbone.focus", f"the stem reads {stem_in} channels, images have {IMAGE_CHANNELS}: "
                                          "set focus: true")
    wrap = backbone.wrap
    count = len(arch.blocks) if wrap == "res" else len(csp_stages(arch)) + 1
    out_indices = backbone.out_indices
    if out_indices in ((), AUTO):
        out_indices = default_res_outputs(arch) if wrap == "res" else default_csp_outputs(arch)
    if len(out_indices) != 3:
        raise src.error("backbone.out_indices", f"the neck needs three backbone levels; this architecture has {count}")
    if any(i >= count for i in out_indices) or list(out_indices) != sorted(set(out_indices)):
        raise src.error("backbone.out_indices", f"expected three increasing indices below {count} "
                                                f"({'blocks' if wrap == 'res' else 'stages'}), got {list(out_indices)}")
    backbone = replace(backbone, out_indices=tuple(out_indices))
    neck = read_section(NeckConfig, doc.get("neck"), src, "neck")
    head = read_section(HeadConfig, doc["head"], src, "head")
    actual = output_strides(arch, wrap, backbone.focus, backbone.out_indices)
    if actual != head.strides:
        raise src.error("head.strides", f"the backbone outputs are at strides {list(actual)}, "
                                        f"the head expects {list(head.strides)}")
    if any(b != 2 * a for a, b in zip(head.strides, head.strides[1:])):
        raise src.error("head.strides", f"each level must halve the previous one, got {list(head.strides)}")
    name = read_value(doc.get("name") or "", str, Setting(), src, "name")
    return ModelRecipe(backbone, neck, head, name)
