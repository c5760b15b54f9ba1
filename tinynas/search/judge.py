"""Judging one candidate: closed-form costs, budgets, latency, score — in that order.

This, and mutating parents with seeds the main process drew, is the work that runs in
joblib workers: a candidate's result is a pure function of the architecture. An ``Evaluator`` is small and
picklable; the scorer and a latency table named by path are built once per process and
kept in ``_PROCESS_CACHE``, so a worker pays for loading them once, not once per batch.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple, Protocol, Sequence

from ..arch import Arch
from ..costs import arch_costs
from ..errors import UserError
from ..scores import create_scorer
from ..space import SearchSpace
from .budgets import CLOSED_FORM_KINDS, Budget
from .packing import pack, unpack


class LatencyModel(Protocol):
    """Anything that predicts milliseconds per image, e.g. ``tinynas.latency.LatencyPredictor``."""

    def predict_ms(self, arch: Arch, resolution: int) -> float: ...


class Evaluation(NamedTuple):
    macs: int
    params: int
    layers: int
    latency_ms: float | None
    within: tuple[bool, ...]  # one flag per ladder rung (one rung without a ladder)
    score: float | None  # None when the candidate fits no rung: it was never scored


_PROCESS_CACHE: dict[Any, Any] = {}


@dataclass(frozen=True)
class ShippedModel:
    """A latency model object frozen to bytes once, for workers.

    Shipping the live object with every task would re-send its growing caches each time,
    and each worker would start from a cold copy per task. A worker unpickles these bytes
    once per run (``token``) and keeps its copy, caches and all. The bytes come from an
    object in this very process, never from a file, so unpickling them runs nothing foreign.
    """

    token: str
    blob: bytes

    @classmethod
    def of(cls, model: LatencyModel) -> "ShippedModel":
        try:
            # cloudpickle (which joblib's loky uses) also carries classes defined in __main__.
            import cloudpickle as pickler
        except ImportError:
            pickler = pickle
        return cls(uuid.uuid4().hex, pickler.dumps(model))

    def load(self) -> LatencyModel:
        key = ("shipped", self.token)
        model = _PROCESS_CACHE.get(key)
        if model is None:
            model = _PROCESS_CACHE[key] = pickle.loads(self.blob)
        return model


def load_latency_table(path: str | os.PathLike) -> LatencyModel:
    """The latency predictor stored at ``path``; imported lazily so search needs no table."""
    if not Path(path).is_file():
        raise UserError(str(path), "latency_db", "latency table not found (build one with "
                        "`tinynas latency build`, or name another with --latency-db)")
    try:
        from ..latency import load_predictor
    except ImportError as err:
        raise UserError(str(path), "latency_db", f"latency tables are unavailable: {err}") from None
    return load_predictor(path)


@dataclass
class Evaluator:
    """Everything needed to judge a candidate; ``latency`` is a table path or a model object."""

    resolution: int
    rungs: tuple[tuple[Budget, ...], ...]
    score_method: str = "madnas"
    score_options: dict = field(default_factory=dict)
    latency: str | LatencyModel | None = None
    # The model once resolved: the hot loop must not touch the file system per candidate.
    _model: object = field(default=None, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_model"] = None  # workers resolve their own copy (see ShippedModel)
        return state

    def _scorer(self):
        key = ("scorer", self.score_method, repr(sorted(self.score_options.items())))
        scorer = _PROCESS_CACHE.get(key)
        if scorer is None:
            scorer = _PROCESS_CACHE[key] = create_scorer(self.score_method, **self.score_options)
        return scorer

    def for_workers(self) -> "Evaluator":
        """This evaluator with a model object replaced by its ``ShippedModel``."""
        if self.latency is None or isinstance(self.latency, (str, ShippedModel)):
            return self
        return replace(self, latency=ShippedModel.of(self.latency))

    def latency_model(self) -> LatencyModel | None:
        if self._model is None:
            self._model = self._resolve_latency_model()
        return self._model

    def _resolve_latency_model(self) -> LatencyModel | None:
        if isinstance(self.latency, ShippedModel):
            return self.latency.load()
        if self.latency is None or hasattr(self.latency, "predict_ms"):
            return self.latency
        path = Path(self.latency)
        # The file's identity is part of the key so a rebuilt table is never served stale.
        stat = path.stat() if path.is_file() else None
        key = ("latency", str(path.resolve()), stat and (stat.st_mtime_ns, stat.st_size))
        model = _PROCESS_CACHE.get(key)
        if model is None:
            model = _PROCESS_CACHE[key] = load_latency_table(path)
        return model

    def evaluate_values(self, arch: Arch) -> dict[str, float]:
        """Every budgeted quantity of ``arch`` (latency only when there is a model)."""
        costs = arch_costs(arch, self.resolution)
        model = self.latency_model()
        return {"flops": 2 * costs.macs, "macs": costs.macs, "params": costs.params_fused,
                "layers": costs.layers,
                "latency": float(model.predict_ms(arch, self.resolution)) if model is not None else None}

    def evaluate(self, arch: Arch) -> Evaluation:
        costs = arch_costs(arch, self.resolution)
        values = {"flops": 2 * costs.macs, "macs": costs.macs, "params": costs.params_fused,
                  "layers": costs.layers}
        closed_ok = [all(values[b.kind] <= b.limit for b in rung if b.kind in CLOSED_FORM_KINDS)
                     for rung in self.rungs]
        if not any(closed_ok):
            return Evaluation(costs.macs, costs.params_fused, costs.layers, None,
                              (False,) * len(self.rungs), None)
        model = self.latency_model()
        latency = float(model.predict_ms(arch, self.resolution)) if model is not None else None
        within = tuple(ok and all(latency <= b.limit for b in rung if b.kind == "latency")
                       for ok, rung in zip(closed_ok, self.rungs))
        score = float(self._scorer()(arch)) if any(within) else None
        return Evaluation(costs.macs, costs.params_fused, costs.layers, latency, within, score)


def candidate_hash(arch: Arch) -> str:
    """64 bits of SHA-1 of the canonical spec; its first 12 hex digits are ``Arch.digest()``."""
    return hashlib.sha1(arch.key.encode()).hexdigest()[:16]


def judge_and_breed(evaluator: Evaluator, space: SearchSpace, blocks: int, judge: Sequence,
                    breed: Sequence[tuple], packed: bool = False) -> dict:
    """One worker task: evaluate ``judge``, and mutate each (parent, seed) of ``breed``.

    Each child gets its own ``random.Random(seed)``, with the seed drawn by the main
    process, so a child is the same whichever worker makes it. With ``packed``, the
    architectures in and out are ``packing.pack`` tuples (cheap to send). A ``UserError``
    comes back as data because it does not pickle.
    """
    try:
        if packed:
            judge = [unpack(a) for a in judge]
            breed = [(unpack(parent), seed) for parent, seed in breed]
        results = [evaluator.evaluate(a) for a in judge]
        children = []
        for parent, seed in breed:
            child = space.mutate(parent, random.Random(seed), blocks)
            children.append((candidate_hash(child), pack(child) if packed else child))
        return {"results": results, "children": children}
    except UserError as err:
        return {"error": (err.source, err.field, err.reason)}


def raise_task_error(outcome: dict) -> dict:
    if "error" in outcome:
        raise UserError(*outcome["error"])
    return outcome
