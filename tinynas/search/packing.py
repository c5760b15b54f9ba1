"""Compact architectures for the trip to and from workers.

Pickling an ``Arch`` sends two dataclasses per block plus its cached key and costs about as
much as evaluating it; a tuple of plain block tuples is a quarter of the bytes and a sixth
of the time. Unpacking skips ``Arch`` validation on purpose: a packed architecture is only
ever one that this search made with ``SearchSpace.mutate`` (which validated it) a moment
earlier, never something read from a user's file.
"""

from __future__ import annotations

from ..arch import Arch, BlockSpec

PackedArch = tuple[tuple, ...]

# Blocks repeat across candidates; interning them also keeps BlockSpec-keyed caches hot.
_BLOCKS: dict[tuple, BlockSpec] = {}
_MAX_BLOCKS = 1 << 18


def pack(arch: Arch) -> PackedArch:
    return tuple((b.cls, b.in_channels, b.out_channels, b.stride, b.kernel, b.depth, b.bottleneck,
                  b.groups, b.act) for b in arch.blocks)


def unpack(packed: PackedArch) -> Arch:
    if len(_BLOCKS) > _MAX_BLOCKS:
        _BLOCKS.clear()
    blocks = []
    for row in packed:
        spec = _BLOCKS.get(row)
        if spec is None:
            spec = _BLOCKS[row] = BlockSpec(*row)
        blocks.append(spec)
    arch = object.__new__(Arch)
    object.__setattr__(arch, "blocks", tuple(blocks))
    object.__setattr__(arch, "_key", "")
    return arch
