"""Architectures as plain, frozen, hashable values.

An ``Arch`` is a stem plus a tuple of ``BlockSpec``; every later piece of tinynas (costs,
scores, latency, torch modules) is a function of it. Construction validates, so an ``Arch``
that exists is well formed: channels chain, strides are 1 or 2, kernels are odd.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Iterator

from .errors import UserError

# Canonical class names are TinyNAS's; DAMO-YOLO's spellings and short names are aliases.
CONV = "ConvKXBNRELU"
K1KX = "SuperResK1KX"
KXKX = "SuperResKXKX"
K1KXK1 = "SuperResK1KXK1"
K1DWK1 = "SuperResK1DWK1"


@dataclass(frozen=True)
class BlockKind:
    """What a block class is: its layer count per unit of L and its bottleneck rule."""

    name: str
    short: str
    layers_per_depth: int
    has_bottleneck: bool
    damoyolo_name: str | None = None


BLOCK_KINDS: dict[str, BlockKind] = {
    CONV: BlockKind(CONV, "conv", 1, False, CONV),
    K1KX: BlockKind(K1KX, "k1kx", 2, True, "SuperResConvK1KX"),
    KXKX: BlockKind(KXKX, "kxkx", 2, True, "SuperResConvKXKX"),
    K1KXK1: BlockKind(K1KXK1, "k1kxk1", 3, True),
    K1DWK1: BlockKind(K1DWK1, "k1dwk1", 3, True),
}

CLASS_ALIASES: dict[str, str] = {}
for _kind in BLOCK_KINDS.values():
    CLASS_ALIASES[_kind.name] = _kind.name
    CLASS_ALIASES[_kind.short] = _kind.name
    if _kind.damoyolo_name:
        CLASS_ALIASES[_kind.damoyolo_name] = _kind.name

ACTIVATIONS = ("relu", "relu6", "silu", "swish", "leakyrelu", "hardswish", "gelu", "identity")

# Upper bounds that no real network comes near, so a typo (out: 100000000) is refused as a
# typo instead of being handed to torch. The widest convolutions in published CNNs have a few
# thousand channels, and at 65536 one 3x3 conv already holds 155 GB of float32 weights, so no
# machine could run a wider one. The largest kernels in use are 31 (RepLKNet) and 51 (SLaK);
# the deepest stages (ResNet-1202) repeat a unit about 200 times. Tighter, machine-dependent
# limits are the memory pre-flight's job (tinynas.memory), not validation's.
MAX_CHANNELS = 65536
MAX_KERNEL = 127
MAX_DEPTH = 1024


def canonical_class(name: object, source: str = "", field_name: str = "class") -> str:
    """Map any accepted spelling of a block class to its canonical TinyNAS name."""
    if isinstance(name, str) and name in CLASS_ALIASES:
        return CLASS_ALIASES[name]
    known = ", ".join(sorted(k for k in CLASS_ALIASES if k[0].isupper()))
    raise UserError(source, field_name, f"unknown block class {name!r} (known: {known})")


def conv_out_size(size: int, stride: int) -> int:
    """Spatial size after a same-padded conv with an odd kernel, as torch computes it."""
    return (size - 1) // stride + 1


@dataclass(frozen=True)
class BlockSpec:
    """One block: ``{class, in, out, s, k, L, btn}`` plus optional groups ``g`` and ``act``."""

    cls: str
    in_channels: int
    out_channels: int
    stride: int
    kernel: int
    depth: int = 1
    bottleneck: int | None = None
    groups: int = 1
    act: str | None = None

    @property
    def kind(self) -> BlockKind:
        return BLOCK_KINDS[self.cls]

    @property
    def layers(self) -> int:
        return self.kind.layers_per_depth * self.depth

    def problems(self) -> Iterator[tuple[str, str]]:
        """Yield (field, reason) for every rule this block breaks on its own."""
        if self.cls not in BLOCK_KINDS:
            yield "class", f"unknown block class {self.cls!r}"
            return
        for key, value in (("in", self.in_channels), ("out", self.out_channels),
                           ("k", self.kernel), ("L", self.depth), ("g", self.groups)):
            if not _is_positive_int(value):
                yield key, f"must be a positive integer, got {value!r}"
                return
        for key, value, limit in (("in", self.in_channels, MAX_CHANNELS), ("out", self.out_channels, MAX_CHANNELS),
                                  ("k", self.kernel, MAX_KERNEL), ("L", self.depth, MAX_DEPTH)):
            if value > limit:
                yield key, f"{value} is beyond the limit of {limit} (no real network comes near it)"
                return
        if self.stride not in (1, 2) or isinstance(self.stride, bool):
            yield "s", f"stride must be 1 or 2, got {self.stride!r}"
        if self.kernel % 2 == 0:
            yield "k", f"kernel must be odd, got {self.kernel}"
        kind = self.kind
        if kind.has_bottleneck:
            if not _is_positive_int(self.bottleneck):
                yield "btn", f"must be a positive integer, got {self.bottleneck!r}"
                return
            if self.bottleneck > MAX_CHANNELS:
                yield "btn", f"{self.bottleneck} is beyond the limit of {MAX_CHANNELS} (no real network comes near it)"
                return
            # btn <= out is a search-space rule, not a structural one: DAMO-YOLO's own
            # published nano (K1KX, btn 64 > out 40) and L (KXKX, 384 > 256) break it.
        else:
            if self.depth != 1:
                yield "L", f"{self.cls} has no depth; L must be 1, got {self.depth}"
            if self.bottleneck is not None:
                yield "btn", f"{self.cls} has no bottleneck"
        if self.groups > 1:
            for key, value in self._grouped_channels():
                if value % self.groups:
                    yield "g", f"groups {self.groups} do not divide {key}={value}"
                    break
        if self.act is not None and self.act not in ACTIVATIONS:
            yield "act", f"unknown activation {self.act!r} (known: {', '.join(ACTIVATIONS)})"

    def _grouped_channels(self) -> tuple[tuple[str, int], ...]:
        # Groups apply to the k x k convolutions only (ResNeXt style).
        if self.cls == CONV:
            return (("in", self.in_channels), ("out", self.out_channels))
        if self.cls == K1DWK1:
            return ()
        if self.cls == KXKX:
            return (("in", self.in_channels), ("out", self.out_channels),
                    ("btn", self.bottleneck))
        if self.cls == K1KX:
            return (("btn", self.bottleneck), ("out", self.out_channels))
        return (("btn", self.bottleneck),)

    def to_dict(self, family: str = "tinynas") -> dict:
        """The file form; ``family`` picks TinyNAS or DAMO-YOLO class names."""
        name = self.cls
        if family == "damoyolo" and self.kind.damoyolo_name:
            name = self.kind.damoyolo_name
        out = {"class": name, "in": self.in_channels, "out": self.out_channels,
               "s": self.stride, "k": self.kernel}
        if self.kind.has_bottleneck:
            out["L"] = self.depth
            out["btn"] = self.bottleneck
        if self.groups != 1:
            out["g"] = self.groups
        if self.act is not None:
            out["act"] = self.act
        return out

    def replace(self, **changes) -> "BlockSpec":
        return replace(self, **changes)


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True)
class Arch:
    """A network: ``blocks[0]`` is the stem, the rest follow in order."""

    blocks: tuple[BlockSpec, ...]
    _key: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.blocks, tuple):
            object.__setattr__(self, "blocks", tuple(self.blocks))
        for field_name, reason in self.problems():
            raise UserError("<arch>", field_name, reason)

    def problems(self) -> Iterator[tuple[str, str]]:
        if not self.blocks:
            yield "blocks", "an architecture needs at least a stem"
            return
        if self.blocks[0].cls != CONV:
            yield "blocks[0].class", f"the stem must be {CONV}, got {self.blocks[0].cls}"
        previous = None
        for i, block in enumerate(self.blocks):
            for key, reason in block.problems():
                yield f"blocks[{i}].{key}", reason
            if previous is not None and block.in_channels != previous.out_channels:
                yield (f"blocks[{i}].in", f"in channels {block.in_channels} do not chain: "
                       f"blocks[{i - 1}].out is {previous.out_channels}")
            previous = block

    @property
    def stem(self) -> BlockSpec:
        return self.blocks[0]

    @property
    def in_channels(self) -> int:
        return self.blocks[0].in_channels

    @property
    def out_channels(self) -> int:
        return self.blocks[-1].out_channels

    @property
    def key(self) -> str:
        """Canonical text of the spec: equal keys mean equal architectures."""
        if not self._key:
            parts = []
            for b in self.blocks:
                parts.append(f"{BLOCK_KINDS[b.cls].short}:{b.in_channels}>{b.out_channels}"
                             f":s{b.stride}:k{b.kernel}:L{b.depth}:b{b.bottleneck or 0}"
                             f":g{b.groups}:{b.act or ''}")
            object.__setattr__(self, "_key", "|".join(parts))
        return self._key

    def digest(self) -> str:
        """A short stable hash of ``key``, for file names and tables."""
        return hashlib.sha1(self.key.encode()).hexdigest()[:12]

    def stage_ends(self) -> tuple[int, ...]:
        """Indices of the blocks that close a stage (TinyNAS's rule).

        A stride-2 block other than the stem closes the stage that ends just before it;
        the last block closes the last stage.
        """
        ends = [i - 1 for i, b in enumerate(self.blocks) if i > 0 and b.stride == 2]
        ends.append(len(self.blocks) - 1)
        return tuple(ends)

    def layers(self) -> int:
        return sum(b.layers for b in self.blocks)

    def to_dicts(self, family: str = "tinynas") -> list[dict]:
        return [b.to_dict(family) for b in self.blocks]

    def with_block(self, index: int, block: BlockSpec) -> "Arch":
        blocks = list(self.blocks)
        blocks[index] = block
        return Arch(tuple(blocks))


def block_from_dict(raw: object, source: str = "", prefix: str = "") -> BlockSpec:
    """Build a ``BlockSpec`` from its file form, rejecting unknown or missing keys."""
    if not isinstance(raw, dict):
        raise UserError(source, prefix or "block", f"a block must be a mapping, got {raw!r}")
    cls = canonical_class(raw.get("class"), source, f"{prefix}.class" if prefix else "class")
    kind = BLOCK_KINDS[cls]
    ignored = {"nbitsA", "nbitsW", "inner_class"}
    allowed = {"class", "in", "out", "s", "k", "g", "act"} | ({"L", "btn"} if kind.has_bottleneck else set())
    required = {"in", "out", "k"} | ({"L", "btn"} if kind.has_bottleneck else set())

    def where(key: str) -> str:
        return f"{prefix}.{key}" if prefix else key

    for key in raw:
        if key not in allowed and key not in ignored:
            raise UserError(source, where(str(key)), f"unknown key for {cls}")
    for key in sorted(required):
        if key not in raw:
            raise UserError(source, where(key), "missing")
    spec = BlockSpec(
        cls=cls,
        in_channels=raw["in"],
        out_channels=raw["out"],
        stride=raw.get("s", 1),
        kernel=raw["k"],
        depth=raw.get("L", 1),
        bottleneck=raw.get("btn"),
        groups=raw.get("g", 1),
        act=raw.get("act"),
    )
    for key, reason in spec.problems():
        raise UserError(source, where(key), reason)
    return spec


def arch_from_dicts(raw: object, source: str = "") -> Arch:
    """Build an ``Arch`` from a list of block mappings, naming ``source`` in every error."""
    if not isinstance(raw, (list, tuple)):
        raise UserError(source, "blocks", "expected a list of blocks")
    blocks = tuple(block_from_dict(b, source, f"blocks[{i}]") for i, b in enumerate(raw))
    try:
        return Arch(blocks)
    except UserError as err:
        raise UserError(source, err.field, err.reason) from None
