"""A name -> class table for one kind of detector part (necks, heads).

Every class of a kind takes the same leading arguments (``contract``); what follows are its
own keyword options, read from its signature so a recipe reader can check keys and fill
defaults per type without a second list to keep in step.
"""

from __future__ import annotations

import inspect

from torch import nn


class PartRegistry:
    def __init__(self, kind: str, contract: tuple[str, ...], parts: dict[str, type[nn.Module]]):
        self.kind, self.contract = kind, contract
        self.parts = dict(parts)

    def __contains__(self, name: object) -> bool:
        return name in self.parts

    def names(self) -> tuple[str, ...]:
        return tuple(self.parts)

    def register(self, name: str, cls: type[nn.Module]) -> None:
        if name in self.parts:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self.parts[name] = cls

    def get(self, name: str) -> type[nn.Module]:
        if name not in self.parts:
            raise KeyError(f"unknown {self.kind} {name!r} (known: {', '.join(self.parts)})")
        return self.parts[name]

    def options(self, name: str) -> dict[str, object]:
        """The keywords a part takes besides the contract's, with their defaults."""
        params = inspect.signature(self.get(name)).parameters.values()
        return {p.name: p.default for p in params if p.name not in self.contract}

    def create(self, name: str, *args, **options) -> nn.Module:
        """``cls(*args, **options)``; an option the class does not take is a ``TypeError``
        naming the ones it does."""
        known = self.options(name)
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise TypeError(f"{self.kind} {name!r} takes no option {', '.join(unknown)} "
                            f"(it takes: {', '.join(known)})")
        return self.get(name)(*args, **options)
