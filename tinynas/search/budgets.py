"""Budgets: upper limits on latency, FLOPs, MACs, params and layers, parsed from text.

``latency=0.12ms``, ``flops=3.5G``, ``params=8M``, ``layers=25``. Latency is kept in
milliseconds per image, everything else as a plain count. FLOPs are 2 x MACs; params are
those of the deploy model (BatchNorm folded into conv biases), which is what ships.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from ..errors import UserError

# kind -> (unit suffix -> scale into the stored unit), and the unit a bare number means.
COUNT_SUFFIXES = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
TIME_SUFFIXES = {"s": 1e3, "ms": 1.0, "us": 1e-3, "µs": 1e-3}
KINDS = ("latency", "flops", "macs", "params", "layers")
# Closed-form kinds are checked before latency: they are cheaper and need no table.
CLOSED_FORM_KINDS = ("flops", "macs", "params", "layers")

_NUMBER = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-zµ]*)\s*$")


@dataclass(frozen=True)
class Budget:
    """``value(kind) <= limit``; ``limit`` is in ms for latency, a count otherwise."""

    kind: str
    limit: float

    @property
    def text(self) -> str:
        return f"{self.kind}={format_limit(self.kind, self.limit)}"

    def allows(self, value: float) -> bool:
        return value <= self.limit


def format_limit(kind: str, limit: float) -> str:
    if kind == "latency":
        return f"{limit:g}ms"
    if kind == "layers":
        return str(int(limit))
    for suffix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if limit >= scale:
            return f"{limit / scale:g}{suffix}"
    return f"{limit:g}"


def parse_value(kind: str, text: str, source: str = "", field: str = "budget") -> float:
    """A limit of ``kind`` from ``text`` such as ``0.12ms``, ``3.5G`` or ``25``."""
    raw = str(text).strip()
    match = _NUMBER.match(raw)
    if not match:
        raise UserError(source, field, f"cannot read {kind} limit {raw!r} (examples: {_example(kind)})")
    number, unit = float(match.group(1)), match.group(2)
    if kind == "latency":
        scale = TIME_SUFFIXES.get(unit.lower() if unit != "µs" else unit) if unit else 1.0
        if scale is None:
            raise UserError(source, field, f"unknown time unit {unit!r} in {raw!r} (use s, ms or us)")
    elif kind == "layers":
        if unit or not number.is_integer():
            raise UserError(source, field, f"layers must be a whole number, got {raw!r}")
        scale = 1.0
    else:
        # Allow an explicit unit name after the multiplier: "3.5GFLOPs", "8Mparams".
        lowered = unit.lower()
        for word in (kind, kind.rstrip("s")):
            if lowered.endswith(word):
                lowered = lowered[: -len(word)]
                break
        scale = COUNT_SUFFIXES.get(lowered)
        if scale is None:
            raise UserError(source, field, f"unknown multiplier {unit!r} in {raw!r} (use K, M, G or T)")
    value = number * scale
    if not math.isfinite(value) or value <= 0:
        raise UserError(source, field, f"{kind} limit must be positive, got {raw!r}")
    return value


def _example(kind: str) -> str:
    return {"latency": "0.12ms, 120us, 1.2e-4s", "layers": "25"}.get(kind, "3.5G, 800M, 8e6")


def _split(text: str, source: str, field: str) -> tuple[str, str]:
    if not isinstance(text, str) or "=" not in text:
        raise UserError(source, field, f"expected KIND=VALUE such as latency=0.12ms, got {text!r}")
    kind, value = (part.strip() for part in text.split("=", 1))
    kind = kind.lower()
    if kind not in KINDS:
        raise UserError(source, field, f"unknown budget {kind!r} (known: {', '.join(KINDS)})")
    return kind, value


def parse_budget(text: str, source: str = "", field: str = "--budget") -> Budget:
    """``"latency=0.12ms"`` -> ``Budget("latency", 0.12)``."""
    kind, value = _split(text, source, field)
    return Budget(kind, parse_value(kind, value, source, field))


def parse_ladder(text: str, source: str = "", field: str = "--ladder") -> tuple[Budget, ...]:
    """``"latency=0.08ms,0.12ms,0.2ms"`` -> one budget per rung, loosest last."""
    kind, values = _split(text, source, field)
    items = [v for v in (part.strip() for part in values.split(",")) if v]
    if len(items) < 2:
        raise UserError(source, field, f"a ladder needs at least two values, got {text!r}")
    limits = sorted(parse_value(kind, v, source, field) for v in items)
    if len(set(limits)) != len(limits):
        raise UserError(source, field, f"ladder values repeat: {text!r}")
    return tuple(Budget(kind, limit) for limit in limits)


def merge_budgets(budgets: Iterable[Budget], source: str = "", field: str = "budgets") -> tuple[Budget, ...]:
    """One budget per kind (a later one replaces an earlier one), in ``KINDS`` order."""
    by_kind: dict[str, Budget] = {}
    for budget in budgets:
        if not isinstance(budget, Budget):
            raise UserError(source, field, f"expected a Budget, got {budget!r}")
        by_kind[budget.kind] = budget
    return tuple(by_kind[k] for k in KINDS if k in by_kind)


def coerce_budgets(budgets: object, source: str = "", field: str = "budgets") -> tuple[Budget, ...]:
    """Accept ``Budget`` values, ``"kind=value"`` strings or a ``{kind: value}`` mapping."""
    if budgets is None:
        return ()
    if isinstance(budgets, (str, Budget)):
        budgets = [budgets]
    items: list[Budget] = []
    if isinstance(budgets, dict):
        for kind, value in budgets.items():
            items.append(parse_budget(f"{kind}={value}", source, field))
    elif isinstance(budgets, (list, tuple)):
        for item in budgets:
            items.append(item if isinstance(item, Budget) else parse_budget(item, source, field))
    else:
        raise UserError(source, field, f"expected a list of KIND=VALUE or a mapping, got {budgets!r}")
    return merge_budgets(items, source, field)


def rung_label(budget: Budget) -> str:
    """A file-name-safe label for a ladder rung: ``latency-0.12ms``."""
    return f"{budget.kind}-{format_limit(budget.kind, budget.limit)}"


def over_budget(budgets: Sequence[Budget], values: dict) -> list[Budget]:
    """The budgets that ``values`` ({kind: value}) break; a value of ``None`` is not judged."""
    return [b for b in budgets if values.get(b.kind) is not None and values[b.kind] > b.limit]
