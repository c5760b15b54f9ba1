"""The name -> scorer class table."""

from __future__ import annotations

from ..errors import UserError

SCORERS: dict[str, type] = {}


def register_scorer(name: str):
    def decorate(cls: type) -> type:
        if name in SCORERS and SCORERS[name] is not cls:
            raise ValueError(f"scorer {name!r} is registered twice")
        SCORERS[name] = cls
        cls.name = name
        return cls
    return decorate


def get_scorer(name: str) -> type:
    if name not in SCORERS:
        raise UserError("", "score method", f"unknown score {name!r} (known: {', '.join(sorted(SCORERS))})")
    return SCORERS[name]


def create_scorer(name: str, **options):
    return get_scorer(name)(**options)
