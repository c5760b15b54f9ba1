"""A registry of one kind of detector part (necks, heads).

Every class of a kind takes the same leading arguments (``contract``); what follows are its
own keyword options, read from its signature so a recipe reader can check keys and fill
defaults per type without a second list to keep in step.
"""

from __future__ import annotations

import inspect

from torch import nn

from ..registry import Registry


class PartRegistry(Registry[type[nn.Module]]):
    def __init__(self, kind: str, contract: tuple[str, ...], parts: dict[str, type[nn.Module]]):
        super().__init__(kind, f"{kind}.type", parts)
        self.contract = contract

    def options(self, name: str) -> dict[str, object]:
        """The keywords a part takes besides the contract's, with their defaults."""
        params = inspect.signature(self.lookup(name)).parameters.values()
        return {p.name: p.default for p in params if p.name not in self.contract}

    def create(self, name: str, *args, **options) -> nn.Module:
        """``cls(*args, **options)``; an option the class does not take is a ``TypeError``
        naming the ones it does."""
        known = self.options(name)
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise TypeError(f"{self.kind} {name!r} takes no option {', '.join(unknown)} "
                            f"(it takes: {', '.join(known)})")
        return self.lookup(name)(*args, **options)
