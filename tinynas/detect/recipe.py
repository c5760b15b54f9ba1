"""The model section of a recipe: ``backbone``, ``neck`` and ``head``, validated into values.

A recipe file may hold other sections (training, data, distillation) that other parts of
tinynas read; this module reads only the three model sections and ``name``. ``to_dict()``
gives the *resolved* form (the architecture inline, output indices explicit), which is what
a checkpoint stores so it can be rebuilt without the files the recipe pointed to.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..arch import ACTIVATIONS, Arch, arch_from_dicts
from ..archio import load_arch
from ..errors import UserError
from ..resources import ARCH_DIR, ARCH_SUFFIXES, PROJECT_ROOT, resolve_file
from ..nn.wrap_csp import csp_stages, default_csp_outputs
from ..nn.wrap_res import default_res_outputs

MODEL_DIR = PROJECT_ROOT / "recipes" / "models"
WRAPS = ("res", "csp")
IMAGE_CHANNELS = 3
SECTION_KEYS = {
    "backbone": ("arch", "wrap", "out_indices", "focus", "spp", "act", "reparam"),
    "neck": ("depth", "hidden_ratio", "out_channels", "act"),
    "head": ("num_classes", "reg_max", "strides"),
}


@dataclass(frozen=True)
class BackboneConfig:
    arch: Arch
    wrap: str = "res"
    out_indices: tuple[int, ...] = ()
    focus: bool = True
    spp: bool = True
    act: str = "relu"
    reparam: bool = True


@dataclass(frozen=True)
class NeckConfig:
    out_channels: tuple[int, int, int] = (64, 128, 256)
    depth: float = 1.0
    hidden_ratio: float = 1.0
    act: str = "relu"


@dataclass(frozen=True)
class HeadConfig:
    num_classes: int = 80
    reg_max: int = 16
    strides: tuple[int, ...] = (8, 16, 32)


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


class _Reader:
    """Typed access to one section, naming ``source`` and ``section.key`` in every error."""

    def __init__(self, doc: object, section: str, source: str):
        self.section, self.source = section, source
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            raise UserError(source, section, "expected a mapping")
        for key in doc:
            if key not in SECTION_KEYS[section]:
                known = ", ".join(SECTION_KEYS[section])
                raise UserError(source, f"{section}.{key}", f"unknown key (known: {known})")
        self.doc = doc

    def fail(self, key: str, reason: str) -> UserError:
        return UserError(self.source, f"{self.section}.{key}", reason)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.doc.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {value!r}")
        return value

    def positive_int(self, key: str, default: int) -> int:
        value = self.doc.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise self.fail(key, f"expected a positive integer, got {value!r}")
        return value

    def positive_float(self, key: str, default: float) -> float:
        value = self.doc.get(key, default)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise self.fail(key, f"expected a positive number, got {value!r}")
        return float(value)

    def int_list(self, key: str, default: tuple[int, ...] | None, length: int | None = None,
                 minimum: int = 1) -> tuple[int, ...] | None:
        value = self.doc.get(key, default)
        if value is None or value == "auto":
            return None
        if (not isinstance(value, (list, tuple)) or not value
                or any(not isinstance(v, int) or isinstance(v, bool) or v < minimum for v in value)):
            raise self.fail(key, f"expected a list of integers >= {minimum}, got {value!r}")
        if length is not None and len(value) != length:
            raise self.fail(key, f"expected {length} values, got {len(value)}")
        return tuple(value)

    def activation(self, key: str, default: str) -> str:
        value = self.doc.get(key, default)
        if value not in ACTIVATIONS:
            raise self.fail(key, f"unknown activation {value!r} (known: {', '.join(ACTIVATIONS)})")
        return value

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.doc.get(key, default)
        if value not in choices:
            raise self.fail(key, f"expected one of {', '.join(choices)}, got {value!r}")
        return value


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


def parse_model_recipe(doc: object, source: str = "<recipe>", base_dir: Path | None = None) -> ModelRecipe:
    """Validate the model sections of a recipe document (other top-level sections are left alone)."""
    if not isinstance(doc, dict):
        raise UserError(source, "", "a recipe must be a YAML mapping")
    for section in ("backbone", "head"):
        if section not in doc:
            raise UserError(source, section, "missing")
    bb = _Reader(doc["backbone"], "backbone", source)
    if "arch" not in bb.doc:
        raise bb.fail("arch", "missing")
    arch = _read_arch(bb.doc["arch"], source, base_dir)
    wrap = bb.choice("wrap", "res", WRAPS)
    focus = bb.boolean("focus", True)
    stem_in = arch.in_channels
    if focus and stem_in not in (IMAGE_CHANNELS, 4 * IMAGE_CHANNELS):
        raise bb.fail("focus", f"a Focus stem needs the architecture's stem to read {IMAGE_CHANNELS} "
                               f"or {4 * IMAGE_CHANNELS} channels, it reads {stem_in}")
    if not focus and stem_in != IMAGE_CHANNELS:
        raise bb.fail("focus", f"the stem reads {stem_in} channels, images have {IMAGE_CHANNELS}: "
                               "set focus: true")
    count = len(arch.blocks) if wrap == "res" else len(csp_stages(arch)) + 1
    out_indices = bb.int_list("out_indices", None, 3, minimum=0)
    if out_indices is None:
        out_indices = default_res_outputs(arch) if wrap == "res" else default_csp_outputs(arch)
    if len(out_indices) != 3:
        raise bb.fail("out_indices", f"the neck needs three backbone levels; this architecture has {count}")
    if any(i >= count for i in out_indices) or list(out_indices) != sorted(set(out_indices)):
        raise bb.fail("out_indices", f"expected three increasing indices below {count} "
                                     f"({'blocks' if wrap == 'res' else 'stages'}), got {list(out_indices)}")
    backbone = BackboneConfig(arch, wrap, out_indices, focus, bb.boolean("spp", True),
                              bb.activation("act", "relu"), bb.boolean("reparam", True))

    nk = _Reader(doc.get("neck"), "neck", source)
    neck = NeckConfig(nk.int_list("out_channels", (64, 128, 256), 3), nk.positive_float("depth", 1.0),
                      nk.positive_float("hidden_ratio", 1.0), nk.activation("act", "relu"))

    hd = _Reader(doc["head"], "head", source)
    head = HeadConfig(hd.positive_int("num_classes", 80), hd.positive_int("reg_max", 16),
                      hd.int_list("strides", (8, 16, 32), 3))
    actual = output_strides(arch, wrap, focus, out_indices)
    if actual != head.strides:
        raise hd.fail("strides", f"the backbone outputs are at strides {list(actual)}, "
                                 f"the head expects {list(head.strides)}")
    if any(b != 2 * a for a, b in zip(head.strides, head.strides[1:])):
        raise hd.fail("strides", f"each level must halve the previous one, got {list(head.strides)}")
    name = doc.get("name", "")
    return ModelRecipe(backbone, neck, head, str(name) if name is not None else "")
