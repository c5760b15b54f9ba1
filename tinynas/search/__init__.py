"""Evolutionary architecture search under FLOPs, params, layers and latency budgets.

``search(space, budgets, ...)`` runs one; ``resume(run_dir)`` continues one from its folder.
"""

from .budgets import Budget, parse_budget, parse_ladder
from .evaluate import candidate_hash
from .evolution import RungResult, SearchResult, resume, search
from .population import Member, Population

__all__ = ["Budget", "Member", "Population", "RungResult", "SearchResult", "candidate_hash",
           "parse_budget", "parse_ladder", "resume", "search"]
