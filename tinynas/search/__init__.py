"""Evolutionary architecture search under FLOPs, params, layers and latency budgets.

``search(space, budgets, ...)`` runs one; ``resume(run_dir)`` continues one from its folder.
``create_evolution(space, budgets, ...)`` gives the same search as an ask/tell strategy
(``Evolution``) and its ``Evaluator``, for a loop of your own.
"""

import sys
import types

from .budgets import Budget, parse_budget, parse_ladder
from .judge import Evaluation, Evaluator, candidate_hash
from .evolution import RungResult, SearchResult, create_evolution, resume, search
from .population import Member, Population
from .strategy import Candidate, Evolution

__all__ = ["Budget", "Candidate", "Evaluation", "Evaluator", "Evolution", "Member", "Population", "RungResult",
           "SearchResult", "candidate_hash", "create_evolution", "parse_budget", "parse_ladder", "resume",
           "search"]


class _SearchPackage(types.ModuleType):
    """``tinynas.search`` is this package, so ``tinynas.search.resume`` and the rest resolve;
    calling the package runs :func:`search`, as ``tinynas.search(...)`` always has."""

    def __call__(self, *args, **kwargs) -> SearchResult:
        return search(*args, **kwargs)


sys.modules[__name__].__class__ = _SearchPackage
