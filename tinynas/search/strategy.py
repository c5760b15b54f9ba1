"""The evolution strategy (MAE-NAS style) behind an ask/tell interface.

``Evolution`` owns what decides the next children: one population per ladder rung, the
hashes of every child seen so far, and the single seeded ``random.Random``. It judges
nothing itself, so the caller may score candidates anywhere (joblib workers, a cluster, a
proxy of its own) and tell the results back::

    seeds, results = evolution.start(evaluator)   # the initial architecture (+ one per rung it breaks)
    evolution.tell(seeds, results)
    children = evolution.ask(512)                  # new, distinct children: judge them, then
    evolution.tell(children, [evaluator.evaluate(c.arch) for c in children])

``ask`` is ``plan`` (draw each child's parent and mutation seed from the one RNG) plus
``breed`` (mutate; a pure function of parent and seed, so any process may do it) plus
``admit`` (drop children seen before; they never reach a judge). Parents are drawn from the
populations as told so far; ``tinynas.search.search`` asks for the next batch before it
tells the previous one, so that breeding and judging share one round trip to the workers.
Every random draw happens in ``plan``, in this process, which is why a result never
depends on how many workers bred or judged.
"""

from __future__ import annotations

import random
from typing import Callable, Iterable, NamedTuple, Protocol, Sequence

from ..arch import Arch, arch_from_dicts
from ..errors import UserError
from ..space import SearchSpace
from .budgets import Budget, format_limit, over_budget
from .judge import Evaluation, candidate_hash
from .population import Member, Population

COUNTERS = ("candidates", "evaluated", "within_budget", "duplicates")


class Candidate(NamedTuple):
    """A child to judge (``step`` 0 marks a seed)."""

    step: int
    hash: str
    arch: Arch


class Breeding(NamedTuple):
    """One planned child: mutate ``parent`` with ``random.Random(seed)``."""

    step: int
    parent: Arch
    seed: int


class Judge(Protocol):
    """What ``Evolution.start`` needs to find seeds: ``tinynas.search.Evaluator`` has it."""

    rungs: tuple[tuple[Budget, ...], ...]

    def evaluate(self, arch: Arch) -> Evaluation: ...

    def evaluate_values(self, arch: Arch) -> dict[str, float]: ...


def breed(space: SearchSpace, blocks_per_child: int, plan: Sequence[Breeding]) -> list[tuple[str, Arch]]:
    """(hash, child) for each planned breeding, made in this process."""
    children = []
    for _, parent, seed in plan:
        child = space.mutate(parent, random.Random(seed), blocks_per_child)
        children.append((candidate_hash(child), child))
    return children


def rng_state_to_json(rng: random.Random) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def rng_from_json(state: list, source: str) -> random.Random:
    try:
        version, internal, gauss = state
        rng = random.Random()
        rng.setstate((int(version), tuple(int(v) for v in internal), gauss))
    except (TypeError, ValueError) as err:
        raise UserError(source, "rng_state", f"not a valid random state ({err})") from None
    return rng


class Evolution:
    """Evolution of ``space``: keeps the ``population`` best distinct architectures per rung.

    The constructor only stores its arguments; ``start`` (a new search) or
    ``load_state_dict`` (a saved one) sets up the state, whose names end in ``_``.
    """

    def __init__(self, space: SearchSpace, population: int = 256, blocks_per_child: int = 1,
                 seed: int = 0, start_tries: int = 3000):
        self.space = space
        self.population = population
        self.blocks_per_child = blocks_per_child
        self.seed = seed
        self.start_tries = start_tries

    # -- state ------------------------------------------------------------------------------
    def _reset(self, rungs: int) -> None:
        self.rng_ = random.Random(self.seed)
        self.populations_ = [Population(self.population) for _ in range(rungs)]
        self.seen_: set[str] = set()
        self.counters_ = dict.fromkeys(COUNTERS, 0)
        # Asked but not yet told, in the order they were asked.
        self.pending_: dict[str, Candidate] = {}

    @property
    def pending(self) -> list[Candidate]:
        """The candidates asked for and not yet told: after a resume, judge these first."""
        return list(self.pending_.values())

    @property
    def generated(self) -> int:
        """Children planned so far, duplicates included (seeds excluded)."""
        return self.counters_["candidates"]

    def state_dict(self, include_seen: bool = True) -> dict:
        """The whole state as JSON values; ``load_state_dict`` continues from it exactly.

        ``include_seen=False`` leaves out the hashes of the candidates told so far (a
        run folder rebuilds them from its candidate log rather than rewriting them).
        """
        state = {
            "rng_state": rng_state_to_json(self.rng_),
            "counters": dict(self.counters_),
            "populations": [p.to_json() for p in self.populations_],
            # Drawn from the RNG but not yet judged: they are judged as they are after a resume.
            "pending": [[c.step, c.hash, c.arch.to_dicts("tinynas")] for c in self.pending_.values()],
        }
        if include_seen:
            state["seen"] = sorted(self.seen_ - self.pending_.keys())
        return state

    def load_state_dict(self, state: dict, told_hashes: Iterable[str] | None = None,
                        source: str = "<state>") -> None:
        """Continue from ``state``; ``told_hashes`` when it was saved without ``seen``."""
        if told_hashes is None:
            if "seen" not in state:
                raise ValueError("this state was saved without its seen hashes: pass told_hashes")
            told_hashes = state["seen"]
        self.rng_ = rng_from_json(state["rng_state"], source)
        self.counters_ = {k: int(state["counters"][k]) for k in COUNTERS}
        self.populations_ = [Population.from_json(self.population, p, source) for p in state["populations"]]
        self.pending_ = {digest: Candidate(int(step), digest, arch_from_dicts(blocks, source))
                         for step, digest, blocks in state.get("pending") or []}
        self.seen_ = set(told_hashes) | self.pending_.keys()

    # -- seeds ------------------------------------------------------------------------------
    def start(self, judge: Judge) -> tuple[list[Candidate], list[Evaluation]]:
        """A new search: the seeds and their evaluations, to ``tell`` (and log) next.

        Seeds: the initial architecture, plus, for every rung it does not fit, an
        architecture found by walking downhill in budget excess. ``UserError`` when a
        budget cannot be reached.
        """
        self._reset(len(judge.rungs))
        seeds = {self.space.initial: judge.evaluate(self.space.initial)}
        for r, rung in enumerate(judge.rungs):
            if not any(ev.within[r] for ev in seeds.values()):
                found = self._find_within(judge, rung)
                if found not in seeds:
                    seeds[found] = judge.evaluate(found)
        for r, rung in enumerate(judge.rungs):
            if not any(ev.within[r] for ev in seeds.values()):  # the walk promised one: this is a bug
                raise RuntimeError(f"no seed fits rung {r} ({', '.join(b.text for b in rung)})")
        candidates = [Candidate(0, candidate_hash(a), a) for a in seeds]
        for candidate in candidates:
            self.seen_.add(candidate.hash)
            self.pending_[candidate.hash] = candidate
        return candidates, list(seeds.values())

    def _excess(self, judge: Judge, arch: Arch, rung: Sequence[Budget]) -> tuple[float, list[str]]:
        """How far over ``rung`` the architecture is (sum of relative excesses), and where."""
        values = judge.evaluate_values(arch)
        broken = over_budget(rung, values)
        total = sum(values[b.kind] / b.limit - 1.0 for b in broken)
        return total, [f"{b.kind} {format_limit(b.kind, values[b.kind])} > {format_limit(b.kind, b.limit)}"
                       for b in broken]

    def _find_within(self, judge: Judge, rung: Sequence[Budget]) -> Arch:
        """Walk from the initial architecture, keeping mutations that do not add excess."""
        current = self.space.initial
        excess, broken_initial = self._excess(judge, current, rung)
        for _ in range(self.start_tries):
            child = self.space.mutate(current, self.rng_)
            child_excess, _ = self._excess(judge, child, rung)
            if child_excess == 0.0:
                return child
            if child_excess <= excess:
                current, excess = child, child_excess
        _, broken = self._excess(judge, current, rung)
        budgets = ", ".join(b.text for b in rung)
        raise UserError(self.space.source or self.space.name, "budgets",
                        f"impossible budget ({budgets}): the initial architecture has "
                        f"{'; '.join(broken_initial)}, and {self.start_tries} mutations "
                        f"got no closer than {'; '.join(broken)}")

    # -- ask --------------------------------------------------------------------------------
    def plan(self, count: int) -> list[Breeding]:
        """Draw ``count`` children's parents (rung, then member) and mutation seeds."""
        rng = self.rng_
        # The populations do not change while planning: read each one's parents once.
        parents = [[m.arch for m in p.members] for p in self.populations_] if count else []
        rungs = len(parents)
        plan = []
        step = self.counters_["candidates"]
        for _ in range(count):
            archs = parents[rng.randrange(rungs)] if rungs > 1 else parents[0]
            step += 1
            plan.append(Breeding(step, archs[rng.randrange(len(archs))], rng.getrandbits(64)))
        self.counters_["candidates"] = step
        return plan

    def admit(self, plan: Sequence[Breeding], children: Sequence[tuple[str, object]],
              to_arch: Callable[[object], Arch] | None = None) -> list[Candidate]:
        """The children (hash, child per breeding of ``plan``) never seen before, in plan order.

        ``to_arch`` turns a child as it came back from a worker into an ``Arch``; it is
        applied to new children only.
        """
        seen, pending, fresh = self.seen_, self.pending_, []
        for (step, _, _), (digest, child) in zip(plan, children):
            if digest in seen:
                self.counters_["duplicates"] += 1
                continue
            seen.add(digest)
            candidate = Candidate(step, digest, child if to_arch is None else to_arch(child))
            pending[digest] = candidate
            fresh.append(candidate)
        return fresh

    def ask(self, count: int) -> list[Candidate]:
        """Up to ``count`` new children, bred in this process (fewer when some were seen before)."""
        plan = self.plan(count)
        return self.admit(plan, breed(self.space, self.blocks_per_child, plan))

    # -- tell -------------------------------------------------------------------------------
    def tell(self, candidates: Sequence[Candidate], results: Sequence[Evaluation]) -> None:
        """Offer each judged candidate (one ``Evaluation`` each) to the rungs it fits.

        A result whose ``score`` is ``None`` (over every rung's budget) only counts.
        """
        if len(candidates) != len(results):
            raise ValueError(f"{len(candidates)} candidates but {len(results)} results")
        counters, populations, pending = self.counters_, self.populations_, self.pending_
        for (step, digest, arch), ev in zip(candidates, results):
            if pending.pop(digest, None) is None:
                raise ValueError(f"candidate {digest} (step {step}) was not asked for, or was told already")
            counters["evaluated"] += 1
            if ev.score is not None:
                counters["within_budget"] += 1
                member = Member(arch, digest, ev.score, ev.macs, ev.params, ev.layers, ev.latency_ms)
                for ok, population in zip(ev.within, populations):
                    if ok:
                        population.offer(member)

    @property
    def best(self) -> list[Member]:
        """The best member of each rung so far."""
        return [p.best for p in self.populations_]
