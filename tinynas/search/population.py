"""The population: the top-N distinct architectures by score.

Members are ordered by descending score, ties broken by hash, so the order (and with it the
parent a seeded draw picks) never depends on insertion history or on dict ordering.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from ..arch import Arch, arch_from_dicts


@dataclass(frozen=True)
class Member:
    arch: Arch
    hash: str
    score: float
    macs: int
    params: int
    layers: int
    latency_ms: float | None

    def to_json(self) -> dict:
        return {"hash": self.hash, "score": self.score, "macs": self.macs, "params": self.params,
                "layers": self.layers, "latency_ms": self.latency_ms,
                "blocks": self.arch.to_dicts("tinynas")}

    @classmethod
    def from_json(cls, doc: dict, source: str = "<checkpoint>") -> "Member":
        return cls(arch_from_dicts(doc["blocks"], source), doc["hash"], float(doc["score"]),
                   int(doc["macs"]), int(doc["params"]), int(doc["layers"]),
                   None if doc["latency_ms"] is None else float(doc["latency_ms"]))


class Population:
    def __init__(self, size: int):
        self.size = size
        self._members: list[Member] = []
        self._order: list[tuple[float, str]] = []  # (-score, hash), sorted
        self._hashes: set[str] = set()

    def __len__(self) -> int:
        return len(self._members)

    def __getitem__(self, index: int) -> Member:
        return self._members[index]

    @property
    def members(self) -> tuple[Member, ...]:
        return tuple(self._members)

    @property
    def best(self) -> Member | None:
        return self._members[0] if self._members else None

    def offer(self, member: Member) -> bool:
        """Insert ``member`` if it is new and ranks within the top ``size``."""
        if member.hash in self._hashes:
            return False
        rank = (-member.score, member.hash)
        if len(self._members) >= self.size and rank >= self._order[-1]:
            return False
        index = bisect.bisect_left(self._order, rank)
        self._order.insert(index, rank)
        self._members.insert(index, member)
        self._hashes.add(member.hash)
        if len(self._members) > self.size:
            dropped = self._members.pop()
            self._order.pop()
            self._hashes.discard(dropped.hash)
        return True

    def to_json(self) -> list[dict]:
        return [m.to_json() for m in self._members]

    @classmethod
    def from_json(cls, size: int, docs: list[dict], source: str = "<checkpoint>") -> "Population":
        population = cls(size)
        for doc in docs:
            population.offer(Member.from_json(doc, source))
        return population
