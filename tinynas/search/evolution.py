"""The evolutionary search (MAE-NAS style), batched so that it runs in parallel and repeats.

Each step draws a parent from the population, mutates ``blocks_per_child`` of its blocks,
and judges the child: over any budget -> rejected before scoring; otherwise scored and
offered to the population (the top ``population`` distinct architectures).

Why results do not depend on ``jobs``: every random draw (rung, parent, and a seed for
the mutation) happens in the main process from one seeded ``random.Random``. The heavy
work — mutating with that seed, costs, budgets, latency, score — is a pure function of its
inputs, so it may run in any worker. A round sends ``batch_size`` (parent, seed) pairs to
breed plus the previous round's new children to judge; the main process then merges the
judged ones in generation order and drops the bred children it has seen before, so no
candidate is judged twice. ``jobs=1`` runs the very same rounds in this process.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from ..arch import Arch, arch_from_dicts
from ..errors import UserError
from ..resources import resolve_space_path
from ..runfolder import check_new_folder, lock_folder, owned_folder
from ..scores import DEFAULT_STAGE_WEIGHTS, SCORERS, parse_weights
from ..space import SearchSpace, load_space, space_from_dict
from .budgets import (Budget, coerce_budgets, format_limit, over_budget, parse_budget, parse_ladder,
                      rung_label)
from .checkpoint import COUNTERS, load_checkpoint, rng_from_json, rng_state_to_json, save_checkpoint
from .evaluate import (Evaluation, Evaluator, LatencyModel, candidate_hash, judge_and_breed,
                       raise_task_error)
from .output import (CANDIDATES_NAME, CandidateLog, environment, plot_pareto, read_hashes,
                     write_best, write_summary)
from .packing import PackedArch, pack, unpack
from .population import Member, Population
from .spacedoc import space_to_dict

# (step, hash, architecture): one generated child; step 0 marks a seed.
Candidate = tuple[int, str, Arch]

BACKENDS = ("loky", "threading", "multiprocessing", "ray", "dask")


@dataclass(frozen=True)
class RungResult:
    """The outcome for one set of budgets (one per ladder rung; one without a ladder)."""

    budgets: tuple[Budget, ...]
    label: str
    best: Member
    population: tuple[Member, ...]
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class SearchResult:
    rungs: tuple[RungResult, ...]
    candidates: int  # children generated, duplicates included
    evaluated: int  # distinct candidates judged (seeds included)
    within_budget: int  # distinct candidates that fit at least one rung
    duplicates: int
    seconds: float
    initial_score: float
    out_dir: Path | None = None
    summary: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def best(self) -> Member:
        """The best member of the only rung (the tightest rung of a ladder)."""
        return self.rungs[0].best

    @property
    def best_arch(self) -> Arch:
        return self.best.arch


# ---------------------------------------------------------------------------- configuration
def _positive_int(value: object, name: str, source: str = "", most: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UserError(source, name, f"must be a positive integer, got {value!r}")
    if most is not None and value > most:
        raise UserError(source, name, f"at most {most}, got {value}")
    return value


# Workers are processes (or cluster tasks): a typo such as 10**9 must not fork-bomb the machine.
MAX_JOBS = 1024
# A population and a batch of children live in memory at once (a few KB each).
MAX_IN_MEMORY = 1_000_000


def _check_jobs(jobs: object, source: str = "") -> int:
    return _positive_int(jobs, "jobs", source, most=MAX_JOBS)


def _as_space(space: SearchSpace | str | Path) -> SearchSpace:
    if isinstance(space, SearchSpace):
        return space
    return load_space(resolve_space_path(str(space)))


def build_config(space: SearchSpace, budgets, ladder, latency, population, candidates,
                 blocks_per_child, seed, score, weights, score_options, resolution, batch_size,
                 checkpoint_every, start_tries, source: str = "") -> dict:
    """Validate the arguments of ``search`` into the JSON config a checkpoint stores."""
    fixed = coerce_budgets(budgets, source, "budgets")
    rungs_text = None
    if ladder is not None:
        rung_budgets = parse_ladder(ladder, source, "ladder") if isinstance(ladder, str) else tuple(
            b if isinstance(b, Budget) else parse_budget(b, source, "ladder") for b in ladder)
        if len({b.kind for b in rung_budgets}) != 1 or len(rung_budgets) < 2:
            raise UserError(source, "ladder", "a ladder is two or more limits of one budget kind")
        rung_budgets = tuple(sorted(rung_budgets, key=lambda b: b.limit))
        if any(b.kind == rung_budgets[0].kind for b in fixed):
            raise UserError(source, "ladder", f"{rung_budgets[0].kind} is both a budget and the ladder; "
                            "give it in one place")
        rungs_text = [b.text for b in rung_budgets]
    resolution = space.resolution if resolution is None else _positive_int(resolution, "resolution", source)
    weights = parse_weights(weights, source, "weights")
    stages = len(space.initial.stage_ends())
    if len(weights) != stages:
        raise UserError(source, "weights", f"{len(weights)} stage weights for a space with {stages} stages")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UserError(source, "seed", f"must be an integer, got {seed!r}")
    if score not in SCORERS:
        raise UserError(source, "score", f"unknown score {score!r} (known: {', '.join(sorted(SCORERS))})")
    if latency is None:
        latency_doc = None
    elif hasattr(latency, "predict_ms"):
        latency_doc = {"object": type(latency).__name__}
    else:
        latency_doc = {"path": str(latency)}
    kinds = {b.kind for b in fixed} | ({parse_budget(rungs_text[0]).kind} if rungs_text else set())
    if "latency" in kinds and latency is None:
        raise UserError(source, "latency", "a latency budget needs a latency table "
                        "(pass latency=<table path or predictor>, or --latency-db)")
    return {
        "space": space_to_dict(space),
        "space_source": space.source,
        "budgets": [b.text for b in fixed],
        "ladder": rungs_text,
        "latency": latency_doc,
        "population": _positive_int(population, "population", source, most=MAX_IN_MEMORY),
        "candidates": _positive_int(candidates, "candidates", source),
        "blocks_per_child": _positive_int(blocks_per_child, "blocks_per_child", source),
        "seed": seed,
        "score": score,
        "weights": list(weights),
        "score_options": dict(score_options or {}),
        "resolution": resolution,
        "batch_size": _positive_int(batch_size, "batch_size", source, most=MAX_IN_MEMORY),
        "checkpoint_every": _positive_int(checkpoint_every, "checkpoint_every", source),
        "start_tries": _positive_int(start_tries, "start_tries", source),
    }


def _rungs(config: dict) -> tuple[tuple[Budget, ...], ...]:
    fixed = tuple(parse_budget(t) for t in config["budgets"])
    if not config["ladder"]:
        return (fixed,)
    return tuple(fixed + (parse_budget(t),) for t in config["ladder"])


def _rung_labels(config: dict) -> list[str]:
    if not config["ladder"]:
        return ["best"]
    return [f"best-{rung_label(parse_budget(t))}" for t in config["ladder"]]


# ---------------------------------------------------------------------------- parallel pool
def _make_pool(jobs: int, backend: str):
    """A reusable joblib pool, or ``None`` to evaluate in this process."""
    if backend not in BACKENDS:
        raise UserError("", "backend", f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})")
    if jobs == 1 and backend in ("loky", "threading", "multiprocessing"):
        return None
    if backend == "ray":
        try:
            from ray.util.joblib import register_ray
        except ImportError:
            raise UserError("", "backend", "ray is not installed (pip install 'ray[default]')") from None
        register_ray()
    elif backend == "dask":
        try:
            from dask.distributed import Client, get_client
        except ImportError:
            raise UserError("", "backend", "dask is not installed (pip install 'dask[distributed]')") from None
        try:
            get_client()
        except ValueError:
            Client(n_workers=jobs)  # a local cluster when none is connected
    from joblib import Parallel
    return Parallel(n_jobs=jobs, backend=backend)


def _split(items: list, parts: int) -> list[list]:
    """``parts`` contiguous slices of ``items`` (some empty when it is short), in order."""
    size = math.ceil(len(items) / parts)
    return [items[i * size:(i + 1) * size] for i in range(parts)]


# ---------------------------------------------------------------------------- the run
class _Run:
    """One search, fresh or resumed; all mutable state lives here."""

    def __init__(self, config: dict, space: SearchSpace, latency, out_dir: Path | None, jobs: int,
                 backend: str, progress: bool):
        self.config = config
        self.space = space
        self.out_dir = out_dir
        self.jobs = jobs
        self.backend = backend
        self.progress = progress
        self.rungs = _rungs(config)
        self.labels = _rung_labels(config)
        self.evaluator = Evaluator(config["resolution"], self.rungs, config["score"],
                                   {**config["score_options"], "weights": tuple(config["weights"])}, latency)
        if config["score"] == "entropy":
            self.evaluator.score_options.setdefault("resolution", config["resolution"])
        self.worker_evaluator: Evaluator | None = None
        self.populations = [Population(config["population"]) for _ in self.rungs]
        self.seen: set[str] = set()
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.segments: list[dict] = []
        self.rng = random.Random(config["seed"])
        self.log: CandidateLog | None = None
        self.next_checkpoint = config["checkpoint_every"]
        # New children bred but not yet evaluated; they are judged in the next round.
        self.pending: list[Candidate] = []

    # -- start ------------------------------------------------------------------------------
    def start_fresh(self) -> None:
        # Seeds: the initial architecture, plus, for every rung it does not fit, an
        # architecture found by walking downhill in budget excess.
        seeds = {self.space.initial: self.evaluator.evaluate(self.space.initial)}
        for r, rung in enumerate(self.rungs):
            if not any(ev.within[r] for ev in seeds.values()):
                found = self._find_within(rung)
                if found not in seeds:
                    seeds[found] = self.evaluator.evaluate(found)
        if self.out_dir is not None:
            # Only now: an impossible budget must not leave a half-made run folder behind.
            self.log = CandidateLog(self.out_dir / CANDIDATES_NAME)
        batch = [(0, candidate_hash(a), a) for a in seeds]
        self.seen.update(digest for _, digest, _ in batch)
        self._merge(batch, list(seeds.values()))
        for label, population in zip(self.labels, self.populations):
            if not len(population):  # every rung got a seed that fits it: this is a bug
                raise RuntimeError(f"no seed fits rung {label}")

    def _excess(self, arch: Arch, rung: Sequence[Budget]) -> tuple[float, list[str]]:
        """How far over ``rung`` the architecture is (sum of relative excesses), and where."""
        values = self.evaluator.evaluate_values(arch)
        broken = over_budget(rung, values)
        total = sum(values[b.kind] / b.limit - 1.0 for b in broken)
        return total, [f"{b.kind} {format_limit(b.kind, values[b.kind])} > {format_limit(b.kind, b.limit)}"
                       for b in broken]

    def _find_within(self, rung: Sequence[Budget]) -> Arch:
        """Walk from the initial architecture, keeping mutations that do not add excess."""
        current = self.space.initial
        excess, broken_initial = self._excess(current, rung)
        for _ in range(self.config["start_tries"]):
            child = self.space.mutate(current, self.rng)
            child_excess, _ = self._excess(child, rung)
            if child_excess == 0.0:
                return child
            if child_excess <= excess:
                current, excess = child, child_excess
        _, broken = self._excess(current, rung)
        budgets = ", ".join(b.text for b in rung)
        raise UserError(self.space.source or self.space.name, "budgets",
                        f"impossible budget ({budgets}): the initial architecture has "
                        f"{'; '.join(broken_initial)}, and {self.config['start_tries']} mutations "
                        f"got no closer than {'; '.join(broken)}")

    def restore(self, doc: dict, source: str) -> None:
        self.rng = rng_from_json(doc["rng_state"], source)
        self.counters = {k: int(doc["counters"][k]) for k in self.counters}
        self.segments = list(doc.get("segments", []))
        self.next_checkpoint = int(doc.get("next_checkpoint", self.config["checkpoint_every"]))
        if len(doc["populations"]) != len(self.rungs):
            raise UserError(source, "populations", "one population per rung expected")
        self.populations = [Population.from_json(self.config["population"], p, source)
                            for p in doc["populations"]]
        csv_bytes = int(doc["csv"]["bytes"])
        if self.out_dir is None:
            raise ValueError("a resumed run needs its folder")
        self.log = CandidateLog(self.out_dir / CANDIDATES_NAME, resume_bytes=csv_bytes)
        self.seen, rows = read_hashes(self.out_dir / CANDIDATES_NAME, csv_bytes)
        if rows != self.counters["evaluated"] or len(self.seen) != rows:
            raise UserError(str(self.out_dir / CANDIDATES_NAME), "", "does not match the checkpoint "
                            f"({rows} rows, {self.counters['evaluated']} expected)")
        pending = doc.get("pending") or []
        if pending:
            self.pending = [(int(step), digest, arch_from_dicts(blocks, source))
                            for step, digest, blocks in pending]
            self.seen.update(digest for _, digest, _ in self.pending)

    # -- loop -------------------------------------------------------------------------------
    def _merge(self, batch: list[Candidate], results: Sequence[Evaluation]) -> None:
        rows = []
        ladder = len(self.rungs) > 1
        for (step, digest, arch), ev in zip(batch, results):
            self.counters["evaluated"] += 1
            if ev.score is not None:
                self.counters["within_budget"] += 1
                member = Member(arch, digest, ev.score, ev.macs, ev.params, ev.layers, ev.latency_ms)
                for ok, population in zip(ev.within, self.populations):
                    if ok:
                        population.offer(member)
            rungs = ";".join(str(r) for r, ok in enumerate(ev.within) if ok) if ladder else ""
            rows.append((step, digest, ev.score, ev.macs, ev.params, ev.layers, ev.latency_ms,
                         ev.score is not None, rungs))
        if self.log is not None:
            self.log.append(rows)

    def _draw(self, count: int) -> list[tuple[int, Arch, int]]:
        """Plan ``count`` children: (step, parent, mutation seed), all drawn from the one RNG."""
        rng, populations = self.rng, self.populations
        plan = []
        step = self.counters["candidates"]
        for _ in range(count):
            population = populations[rng.randrange(len(populations))] if len(populations) > 1 else populations[0]
            step += 1
            plan.append((step, population[rng.randrange(len(population))].arch, rng.getrandbits(64)))
        self.counters["candidates"] = step
        return plan

    def _dedup(self, plan: list[tuple[int, Arch, int]], children: list[tuple[str, object]],
               packed: bool) -> list[Candidate]:
        """The children never seen before, in plan order; they join ``seen`` at once."""
        seen, fresh = self.seen, []
        for (step, _, _), (digest, child) in zip(plan, children):
            if digest in seen:
                self.counters["duplicates"] += 1
                continue
            seen.add(digest)
            fresh.append((step, digest, unpack(child) if packed else child))
        return fresh

    def _call(self, pool, judge: list[Candidate], plan: list[tuple[int, Arch, int]]):
        """Evaluate ``judge`` and breed ``plan``, split into one task per job."""
        blocks = self.config["blocks_per_child"]
        if pool is None:
            outcomes = [judge_and_breed(self.evaluator, self.space, blocks, [a for _, _, a in judge],
                                        [(parent, seed) for _, parent, seed in plan])]
        else:
            from joblib import delayed
            if self.worker_evaluator is None:
                self.worker_evaluator = self.evaluator.for_workers()
            packed_parents: dict[int, PackedArch] = {}  # a parent is packed once per round
            archs = [pack(a) for _, _, a in judge]
            breed = [(packed_parents.get(id(p)) or packed_parents.setdefault(id(p), pack(p)), seed)
                     for _, p, seed in plan]
            parts = self.jobs
            outcomes = pool(delayed(judge_and_breed)(self.worker_evaluator, self.space, blocks, j, b, True)
                            for j, b in zip(_split(archs, parts), _split(breed, parts)) if j or b)
        results: list[Evaluation] = []
        children: list[tuple[str, Arch]] = []
        for outcome in outcomes:
            outcome = raise_task_error(outcome)
            results.extend(outcome["results"])
            children.extend(outcome["children"])
        return results, children, pool is not None

    def run(self) -> None:
        """Each round judges the last round's new children while breeding the next ones.

        So a batch's parents come from the population as it stood before the previous batch
        was merged: one round trip to the workers per round instead of two.
        """
        total = self.config["candidates"]
        started = time.perf_counter()
        segment = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   "from_candidate": self.counters["candidates"], "jobs": self.jobs, "backend": self.backend}
        self.segments.append(segment)
        from tqdm import tqdm
        bar = tqdm(total=total, initial=self.counters["candidates"], unit="cand", unit_scale=True,
                   disable=not self.progress, dynamic_ncols=True, desc="search")
        pool = _make_pool(self.jobs, self.backend)
        try:
            if pool is not None:
                pool.__enter__()
            while True:
                count = min(self.config["batch_size"], total - self.counters["candidates"])
                plan = self._draw(count)
                if not plan and not self.pending:
                    break
                results, children, packed = self._call(pool, self.pending, plan)
                self._merge(self.pending, results)
                self.pending = self._dedup(plan, children, packed)
                bar.update(count)
                bar.set_postfix_str(self._postfix(), refresh=False)
                segment["seconds"] = round(time.perf_counter() - started, 3)
                segment["to_candidate"] = self.counters["candidates"]
                if self.counters["candidates"] >= self.next_checkpoint:
                    while self.next_checkpoint <= self.counters["candidates"]:
                        self.next_checkpoint += self.config["checkpoint_every"]
                    self.checkpoint()
        finally:
            if pool is not None:
                pool.__exit__(None, None, None)
            bar.close()
        segment["seconds"] = round(time.perf_counter() - started, 3)
        segment["to_candidate"] = self.counters["candidates"]
        self.checkpoint()

    def _postfix(self) -> str:
        best = "/".join(f"{p.best.score:.2f}" for p in self.populations)
        share = self.counters["within_budget"] / max(1, self.counters["evaluated"])
        return f"best={best} in-budget={share:.0%}"

    def checkpoint(self) -> None:
        if self.out_dir is None:
            return
        save_checkpoint(self.out_dir, {
            "config": self.config,
            "rng_state": rng_state_to_json(self.rng),
            "counters": self.counters,
            "next_checkpoint": self.next_checkpoint,
            "segments": self.segments,
            "populations": [p.to_json() for p in self.populations],
            "csv": {"bytes": self.log.bytes if self.log else 0, "rows": self.counters["evaluated"]},
            # Generated (so drawn from the RNG) but not yet merged: resumed as they are.
            "pending": [[step, digest, arch.to_dicts("tinynas")] for step, digest, arch in self.pending],
        })

    # -- finish -----------------------------------------------------------------------------
    def finish(self) -> SearchResult:
        if self.log is not None:
            self.log.close()
        seconds = sum(s.get("seconds", 0.0) for s in self.segments)
        initial_score = float(self.evaluator._scorer()(self.space.initial))
        has_latency = self.evaluator.latency is not None
        rung_results = []
        for budgets, label, population in zip(self.rungs, self.labels, self.populations):
            best = population.best
            files: tuple[str, ...] = ()
            if self.out_dir is not None:
                meta = {"score": best.score, "hash": best.hash, "macs": best.macs, "flops": 2 * best.macs,
                        "params": best.params, "layers": best.layers, "latency_ms": best.latency_ms,
                        "budgets": [b.text for b in budgets], "space": self.space.name,
                        "resolution": self.config["resolution"], "seed": self.config["seed"]}
                files = tuple(write_best(self.out_dir, label, best, meta))
            rung_results.append(RungResult(budgets, label, best, population.members, files))
        summary = {
            "config": {k: v for k, v in self.config.items() if k != "space"},
            "space": self.config["space"],
            "seed": self.config["seed"],
            **environment(),
            "latency_device": getattr(self.evaluator.latency_model(), "device", None) if has_latency else None,
            "timings": {"seconds": round(seconds, 3),
                        "candidates_per_s": round(self.counters["candidates"] / seconds, 1) if seconds else None,
                        "segments": self.segments},
            "counters": self.counters,
            "initial_score": initial_score,
            "rungs": [{"label": r.label, "budgets": [b.text for b in r.budgets], "files": list(r.files),
                       "best": {k: v for k, v in r.best.to_json().items() if k != "blocks"}}
                      for r in rung_results],
        }
        if self.out_dir is not None:
            plot = plot_pareto(self.out_dir, [(r.label, r.best) for r in rung_results], has_latency)
            summary["files"] = ["candidates.csv", "checkpoint.json", "summary.json"] + [
                f for r in rung_results for f in r.files] + ([plot] if plot else [])
            write_summary(self.out_dir, summary)
        return SearchResult(tuple(rung_results), self.counters["candidates"], self.counters["evaluated"],
                            self.counters["within_budget"], self.counters["duplicates"], seconds,
                            initial_score, self.out_dir, summary)


# ---------------------------------------------------------------------------- public API
def search(space: SearchSpace | str | Path, budgets=(), *, ladder=None,
           latency: str | Path | LatencyModel | None = None, population: int = 256,
           candidates: int = 10000, blocks_per_child: int = 1, seed: int = 0, score: str = "madnas",
           weights: Sequence[float] | str = DEFAULT_STAGE_WEIGHTS, score_options: dict | None = None,
           resolution: int | None = None, jobs: int = 1, backend: str = "loky", batch_size: int = 512,
           checkpoint_every: int = 10000, start_tries: int = 3000, out: str | Path | None = None,
           progress: bool = False, exist_ok: bool = False, source: str = "") -> SearchResult:
    """Evolve architectures of ``space`` under ``budgets``; see the module docstring.

    ``budgets``: ``Budget`` values, ``"kind=value"`` strings or a ``{kind: value}`` mapping.
    ``ladder``: ``"latency=0.08ms,0.12ms"`` (or a list of budgets of one kind) for one best
    architecture per limit from one shared search. ``latency``: a latency table path or any
    object with ``predict_ms(arch, resolution)``. ``out``: a run folder for the log,
    checkpoints and results (``None`` keeps everything in memory); it must be new or empty
    unless ``exist_ok``, and it is locked while the search runs. ``jobs`` and ``backend``
    change the speed, never the result. ``source`` (a recipe file) is named in errors.
    """
    space = _as_space(space)
    if isinstance(latency, (str, Path)):
        latency = str(latency)
    config = build_config(space, budgets, ladder, latency, population, candidates, blocks_per_child,
                          seed, score, weights, score_options, resolution, batch_size, checkpoint_every,
                          start_tries, source)
    _check_jobs(jobs, source)
    if out is None:
        return _search_fresh(config, space, latency, None, jobs, backend, progress)
    out_dir = check_new_folder(out, "out", force=True)
    with owned_folder(out_dir):
        # Checked under the lock: a second writer started at the same moment sees the first's files.
        if (out_dir / "checkpoint.json").exists() or (out_dir / CANDIDATES_NAME).exists():
            raise UserError(str(out_dir), "out", "already holds a search: resume it, or choose another folder")
        check_new_folder(out_dir, "out", force=exist_ok)
        return _search_fresh(config, space, latency, out_dir, jobs, backend, progress)


def _search_fresh(config, space, latency, out_dir, jobs, backend, progress) -> SearchResult:
    run = _Run(config, space, latency, out_dir, jobs, backend, progress)
    if isinstance(latency, str):
        run.evaluator.latency_model()  # a missing or corrupt table fails here, before any work
    run.start_fresh()
    run.checkpoint()
    run.run()
    return run.finish()


def resume(run_dir: str | Path, *, latency: LatencyModel | None = None, jobs: int = 1,
           backend: str = "loky", progress: bool = False) -> SearchResult:
    """Continue the search saved in ``run_dir``; it ends as an uninterrupted run would have."""
    run_dir = Path(run_dir)
    load_checkpoint(run_dir)  # a folder that is not a run is refused before it is locked
    _check_jobs(jobs)
    with lock_folder(run_dir):
        doc = load_checkpoint(run_dir)
        source = str(run_dir / "checkpoint.json")
        try:
            run = _restored_run(doc, source, run_dir, latency, jobs, backend, progress)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
            # The checkpoint passed its format checks yet holds values of the wrong shape.
            raise UserError(source, "", f"damaged checkpoint ({err.__class__.__name__}: {err}); "
                            "start the search again") from None
        run.run()
        return run.finish()


def _restored_run(doc: dict, source: str, run_dir: Path, latency, jobs: int, backend: str, progress: bool) -> "_Run":
    config = doc["config"]
    space = space_from_dict(config["space"], f"{source}: config.space")
    space = replace(space, source=config.get("space_source") or space.source)
    stored = config["latency"]
    if stored is None:
        latency = None
    elif "path" in stored:
        if latency is None:
            latency = stored["path"]
    elif latency is None:
        raise UserError(source, "config.latency", f"this run used a {stored['object']} object as its latency "
                        "model; pass the same one again (resume(..., latency=...))")
    run = _Run(config, space, latency, run_dir, jobs, backend, progress)
    if isinstance(latency, str):
        run.evaluator.latency_model()
    run.restore(doc, source)
    return run
