"""Judging candidates and breeding planned children, here or in joblib workers.

One call does both, so a round of the search costs one round trip to the workers. The
work is split into one contiguous slice per job and the results come back in order, so
what the search sees does not depend on ``jobs``. Architectures cross to workers packed
(see packing.py); a latency model object crosses once per run (``Evaluator.for_workers``).
"""

from __future__ import annotations

import math
from typing import Sequence

from ..errors import UserError
from ..space import SearchSpace
from .judge import Evaluation, Evaluator, judge_and_breed, raise_task_error
from .packing import PackedArch, pack, unpack
from .strategy import Breeding, Candidate

# joblib backends that run on this machine. Cluster backends (ray, dask) were dropped: none
# was tested, and dask's local cluster was never shut down.
BACKENDS = ("loky", "threading", "multiprocessing")


def check_backend(backend: object) -> str:
    if backend not in BACKENDS:
        raise UserError("", "backend", f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})")
    return backend


def _split(items: list, parts: int) -> list[list]:
    """``parts`` contiguous slices of ``items`` (some empty when it is short), in order."""
    size = math.ceil(len(items) / parts)
    return [items[i * size:(i + 1) * size] for i in range(parts)]


class WorkerPool:
    """A context manager; ``jobs=1`` works in this process with no pool at all."""

    def __init__(self, evaluator: Evaluator, space: SearchSpace, blocks_per_child: int, jobs: int = 1,
                 backend: str = "loky"):
        self.evaluator = evaluator
        self.space = space
        self.blocks_per_child = blocks_per_child
        self.jobs = jobs
        self.backend = check_backend(backend)
        self._parallel = None
        self._worker_evaluator: Evaluator | None = None

    @property
    def to_arch(self):
        """How a child that came back becomes an ``Arch`` (``None``: it already is one)."""
        return None if self._parallel is None else unpack

    def __enter__(self) -> "WorkerPool":
        if self.jobs > 1:
            from joblib import Parallel
            self._parallel = Parallel(n_jobs=self.jobs, backend=self.backend)
            self._parallel.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._parallel is not None:
            self._parallel.__exit__(None, None, None)
            self._parallel = None

    def judge_and_breed(self, judge: Sequence[Candidate], plan: Sequence[Breeding]
                        ) -> tuple[list[Evaluation], list[tuple[str, object]]]:
        """One ``Evaluation`` per candidate of ``judge``; (hash, child) per breeding of ``plan``."""
        if self._parallel is None:
            outcomes = [judge_and_breed(self.evaluator, self.space, self.blocks_per_child,
                                        [a for _, _, a in judge], [(p, seed) for _, p, seed in plan])]
        else:
            outcomes = self._in_workers(judge, plan)
        results: list[Evaluation] = []
        children: list[tuple[str, object]] = []
        for outcome in outcomes:
            outcome = raise_task_error(outcome)
            results.extend(outcome["results"])
            children.extend(outcome["children"])
        return results, children

    def _in_workers(self, judge: Sequence[Candidate], plan: Sequence[Breeding]) -> list[dict]:
        from joblib import delayed
        if self._worker_evaluator is None:
            self._worker_evaluator = self.evaluator.for_workers()
        packed_parents: dict[int, PackedArch] = {}  # a parent is packed once per round
        archs = [pack(a) for _, _, a in judge]
        breed = [(packed_parents.get(id(p)) or packed_parents.setdefault(id(p), pack(p)), seed)
                 for _, p, seed in plan]
        task = delayed(judge_and_breed)
        return self._parallel(task(self._worker_evaluator, self.space, self.blocks_per_child, j, b, True)
                              for j, b in zip(_split(archs, self.jobs), _split(breed, self.jobs)) if j or b)

