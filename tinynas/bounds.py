"""Natural ranges of numeric settings: a decay below 1, a probability at most 1, a positive epsilon.

One checker, so every recipe section words a value out of its range the same way.
"""

from __future__ import annotations

import math

from .errors import UserError


def check_range(value: float, bounds: str, source: str, where: str) -> float:
    """``value`` inside ``bounds``, written as an interval: ``"[0, 1)"``, ``"(0, inf)"``, ``"[0, 0.5]"``."""
    low_text, high_text = (part.strip() for part in bounds[1:-1].split(","))
    low, high = float(low_text), float(high_text)
    low_open, high_open = bounds[0] == "(", bounds[-1] == ")"
    ok = math.isfinite(value) and (value > low if low_open else value >= low) and (
        value < high if high_open else value <= high)
    if not ok:
        raise UserError(source, where, f"expected a value in {bounds}, got {value!r}")
    return value
