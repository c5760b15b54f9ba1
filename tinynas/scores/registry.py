"""The name -> scorer class table."""

from __future__ import annotations

from ..registry import Registry

SCORERS: Registry[type] = Registry("score", "score")


def register_scorer(name: str):
    def decorate(cls: type) -> type:
        SCORERS.register(name, cls)
        cls.name = name
        return cls
    return decorate


def get_scorer(name: str) -> type:
    return SCORERS.lookup(name)


def create_scorer(name: str, **options):
    return get_scorer(name)(**options)
