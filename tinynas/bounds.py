"""Natural ranges of numeric settings: a decay below 1, a probability at most 1, a positive epsilon.

A range is written as an interval: ``"[0, 1)"``, ``"(0, inf)"``, ``"[1, 1024]"``. One checker, so
every setting words a value out of its range the same way (the config layer reads its
``bounds`` metadata with it).
"""

from __future__ import annotations

import math

from .errors import UserError


def parse_bounds(bounds: str) -> tuple[float, float, bool, bool]:
    """``"[0, 1)"`` as (low, high, low is open, high is open)."""
    low_text, high_text = (part.strip() for part in bounds[1:-1].split(","))
    return float(low_text), float(high_text), bounds[0] == "(", bounds[-1] == ")"


def in_bounds(value: float, bounds: str) -> bool:
    """Whether ``value`` (finite) lies inside the interval ``bounds``."""
    if isinstance(value, float) and not math.isfinite(value):
        return False
    low, high, low_open, high_open = parse_bounds(bounds)
    # Python compares ints with floats exactly, so a huge integer is out of range, not an overflow.
    return (value > low if low_open else value >= low) and (value < high if high_open else value <= high)


def out_of_range(value: float, bounds: str) -> str:
    """The one wording of a value outside its range."""
    return f"expected a value in {bounds}, got {value!r}"


def check_range(value: float, bounds: str, source: str, where: str) -> float:
    """``value`` inside ``bounds``, else a ``UserError`` naming ``source`` and ``where``."""
    if not in_bounds(value, bounds):
        raise UserError(source, where, out_of_range(value, bounds))
    return value
