"""Looking up a training part by the name a recipe gives it."""

from __future__ import annotations

from ..errors import UserError


def pick(table: dict, field: str, name: str):
    """``table[name]``, or a ``UserError`` naming the recipe ``field`` and the known names."""
    if name not in table:
        raise UserError("", field, f"unknown value {name!r}; one of {', '.join(table)}")
    return table[name]
