"""A search space back to its YAML document, and per-block limit overrides.

A run stores the exact space it searched inside its checkpoint (not a path to a file that
may change later), so a resume searches the same space. Recipes narrow a shipped space
with ``limits`` (DAMO-YOLO's T search uses smaller channel ranges than S on the same space).
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import UserError
from ..space import LIMIT_KEYS, BlockLimits, SearchSpace, space_from_dict


def _limits_to_dict(lim: BlockLimits) -> dict:
    return {"out": list(lim.out), "L": list(lim.depth), "btn_ratio": list(lim.btn_ratio),
            "kernels": list(lim.kernels)}


def space_to_dict(space: SearchSpace) -> dict:
    """The document ``space_from_dict`` turns back into an equal ``SearchSpace``."""
    return {
        "name": space.name,
        "description": space.description,
        "resolution": space.resolution,
        "in_channels": space.in_channels,
        "channel_divisor": space.channel_divisor,
        "mutation": {
            "channel_multipliers": list(space.channel_multipliers),
            "depth_steps": list(space.depth_steps),
            "nondecreasing_channels": space.nondecreasing_channels,
        },
        "initial": space.initial.to_dicts("tinynas"),
        "blocks": [_limits_to_dict(lim) for lim in space.limits],
    }


def override_limits(space: SearchSpace, overrides: object, source: str, field: str = "limits") -> SearchSpace:
    """Replace some limits of some blocks: ``[null, {out: [64, 96]}, ...]``, one entry per block."""
    if overrides is None:
        return space
    n = len(space.limits)
    if not isinstance(overrides, list) or len(overrides) != n:
        raise UserError(source, field, f"expected a list of {n} entries (null keeps a block's limits)")
    doc = space_to_dict(space)
    for i, entry in enumerate(overrides):
        if entry is None:
            continue
        if not isinstance(entry, dict):
            raise UserError(source, f"{field}[{i}]", f"expected a mapping of limits or null, got {entry!r}")
        for key in entry:
            if key not in LIMIT_KEYS:
                raise UserError(source, f"{field}[{i}].{key}", f"unknown limit (known: {', '.join(LIMIT_KEYS)})")
        doc["blocks"][i].update(entry)
    narrowed = space_from_dict(doc, source)
    return replace(narrowed, source=space.source or source)
