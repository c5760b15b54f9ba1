"""The first setting in which two model recipes differ, in words: what a resume or a
fine-tuning start names when a checkpoint was written by another model."""

from __future__ import annotations


def model_difference(stored: object, current: object, where: str = "") -> str | None:
    """The first setting in which two model recipes (as dicts) differ, in words; ``None`` when
    they describe the same model (its name aside: the name does not shape a weight)."""
    if isinstance(stored, dict) and isinstance(current, dict):
        for key in [*stored, *(k for k in current if k not in stored)]:
            if not where and key == "name":
                continue
            found = model_difference(stored.get(key), current.get(key), f"{where}.{key}" if where else str(key))
            if found is not None:
                return found
        return None
    if stored == current:
        return None
    if isinstance(stored, list) and isinstance(current, list):
        if len(stored) != len(current):
            return f"{where}: {len(stored)} entries in the checkpoint, {len(current)} in recipe.yaml"
        return next((found for i, (a, b) in enumerate(zip(stored, current))
                     if (found := model_difference(a, b, f"{where}[{i}]")) is not None), None)
    return f"{where}: {stored!r} in the checkpoint, {current!r} in recipe.yaml"
