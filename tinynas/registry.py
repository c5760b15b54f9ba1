"""One registry type for every "name in a recipe -> thing" table.

Blocks, necks, heads, scores, assigners, losses and runtimes are each a ``Registry``: a
read-only mapping from name to entry, extended with ``register``, and looked up with
``lookup``, whose error is one line naming the recipe field (``train.assigner``, ``neck.type``,
``--runtime``) and the known names. Iterating yields the names in registration order, so a
registry works wherever a tuple of names did (``choices=``, ``", ".join``).
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, Mapping, TypeVar

from .errors import UserError

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    def __init__(self, kind: str, field: str, entries: Mapping[str, T] | None = None, hint: str = ""):
        """``kind`` says what an entry is (``"neck"``), ``field`` where a recipe names one,
        ``hint`` how a user adds one (appended to the unknown-name error)."""
        self.kind, self.field, self.hint = kind, field, hint
        self._entries: dict[str, T] = {}
        for name, entry in (entries or {}).items():
            self.register(name, entry)

    # Mapping: a missing name is a KeyError here, as for any mapping; ``lookup`` is the user's door.
    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def register(self, name: str, entry: T | None = None, replace: bool = False) -> T | Callable[[T], T]:
        """Add ``entry`` as ``name``; without ``entry``, a decorator that adds what it decorates.
        Registering the same entry again is harmless; another one under a taken name is refused
        unless ``replace``."""
        if entry is None:
            return lambda decorated: self.register(name, decorated, replace)
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} needs a non-empty name, got {name!r}")
        if name in self._entries and self._entries[name] is not entry and not replace:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> T:
        """Remove ``name`` (a plugin's or a test's entry) and return what it held."""
        return self._entries.pop(name)

    def lookup(self, name: object, source: str = "", field: str | None = None) -> T:
        """The entry registered as ``name``, or a one-line ``UserError`` naming ``source`` (a
        file, or empty), the recipe field and the known names."""
        if isinstance(name, str) and name in self._entries:
            return self._entries[name]
        hint = f"; {self.hint}" if self.hint else ""
        raise UserError(source, field or self.field,
                        f"unknown {self.kind} {name!r} (known: {', '.join(self._entries)}{hint})")
