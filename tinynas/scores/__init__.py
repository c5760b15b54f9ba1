"""Zero-shot scores by name.

A scorer is a class whose constructor takes its options as keywords and whose instances
are called on an ``Arch`` to give a float (higher is better). Register a new proxy with
``@register_scorer("name")`` in its own module and import that module here.
"""

from __future__ import annotations

from .base import DEFAULT_STAGE_WEIGHTS, StageScore, parse_weights, stage_totals
from .registry import SCORERS, create_scorer, get_scorer, register_scorer
from . import madnas as _madnas  # noqa: F401  (registers "madnas")
from . import entropy as _entropy  # noqa: F401  (registers "entropy")
from .madnas import MadnasScore
from .entropy import EntropyScore

__all__ = [
    "DEFAULT_STAGE_WEIGHTS", "SCORERS", "EntropyScore", "MadnasScore", "StageScore",
    "create_scorer", "get_scorer", "parse_weights", "register_scorer", "stage_totals",
]
