"""``search`` and ``resume``: the evolution strategy, a worker pool and a run store, wired.

Each step draws a parent from the population, mutates ``blocks_per_child`` of its blocks,
and judges the child: over any budget -> rejected before scoring; otherwise scored and
offered to the population (the top ``population`` distinct architectures). The strategy
(strategy.py) decides; the pool (workers.py) judges and breeds; the store (store.py) writes.

Each round sends the previous round's new children to be judged together with the next
``batch_size`` children to breed, so the next batch's parents come from the population as
it stood before the previous batch was told: one round trip to the workers per round.
Results do not depend on ``jobs`` because every random draw happens in ``Evolution.plan``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from ..arch import Arch
from ..errors import UserError
from ..renamed import renamed_keyword
from ..runfolder import check_new_folder, lock_folder, owned_folder
from ..scores import DEFAULT_STAGE_WEIGHTS
from ..space import SearchSpace, space_from_dict
from .budgets import Budget
from .state_file import CHECKPOINT_NAME, load_checkpoint
from .judge import Evaluator, LatencyModel
from .output import CANDIDATES_NAME
from .population import Member
from .search_recipe import resolve_latency_path
from .settings import SearchConfig, as_space, build_config, check_jobs, config_latency_model
from .store import RunStore
from .strategy import Evolution
from .workers import BACKENDS, WorkerPool, check_backend

__all__ = ["BACKENDS", "RungResult", "SearchResult", "build_config", "create_evolution", "resume", "search"]


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


# ---------------------------------------------------------------------------- assembly
def _evaluator(config: SearchConfig, latency) -> Evaluator:
    latency = config_latency_model(config, latency)
    evaluator = Evaluator(config.resolution, config.rungs, config.score,
                          {**config.score_options, "weights": config.stage_weights}, latency)
    if config.score == "entropy":
        evaluator.score_options.setdefault("resolution", config.resolution)
    if isinstance(latency, str):
        evaluator.latency_model()  # a missing or corrupt table fails here, before any work
    return evaluator


def _evolution(config: SearchConfig, space: SearchSpace) -> Evolution:
    return Evolution(space, config.population, config.blocks_per_child, config.seed, config.start_tries)


def _stage_weights(function: str, stage_weights, old_names: dict):
    """``stage_weights``, or the value of its old keyword ``weights``; no other keyword is taken."""
    stage_weights = renamed_keyword(function, old_names, "weights", "stage_weights", stage_weights,
                                    DEFAULT_STAGE_WEIGHTS)
    if old_names:
        raise TypeError(f"{function}() got an unexpected keyword argument {next(iter(old_names))!r}")
    return stage_weights


def _as_latency(latency):
    """A table path or shipped name (``"cpu-fp32"``, as the CLI takes it) as a path; any other
    latency model as it is."""
    return str(resolve_latency_path(str(latency))) if isinstance(latency, (str, Path)) else latency


def create_evolution(space: SearchSpace | str | Path, budgets=(), *, ladder=None,
                     latency: str | Path | LatencyModel | None = None, population: int = 256,
                     blocks_per_child: int = 1, seed: int = 0, score: str = "madnas",
                     stage_weights: Sequence[float] | str = DEFAULT_STAGE_WEIGHTS, score_options: dict | None = None,
                     resolution: int | None = None, start_tries: int = 3000, detector=None,
                     source: str = "", **old_names) -> tuple[Evolution, Evaluator]:
    """The strategy and the evaluator that ``search`` would use with these settings.

    For a search loop of your own (``ask``/``tell``; see strategy.py): judge with the
    evaluator, or with anything that returns ``Evaluation`` values.
    """
    stage_weights = _stage_weights("create_evolution", stage_weights, old_names)
    space = as_space(space)
    latency = _as_latency(latency)
    config = build_config(space, budgets, ladder, latency, population, 1, blocks_per_child, seed, score,
                          stage_weights, score_options, resolution, 1, 1, start_tries, source, detector)
    return _evolution(config, space), _evaluator(config, latency)


# ---------------------------------------------------------------------------- the run
def _run(config: SearchConfig, evolution: Evolution, evaluator: Evaluator, store: RunStore, jobs: int,
         backend: str, progress: bool) -> None:
    """Rounds until ``config.candidates`` children were generated and all are judged."""
    total, batch_size = config.candidates, config.batch_size
    store.begin_segment(evolution.generated, jobs, backend)
    from tqdm import tqdm
    bar = tqdm(total=total, initial=evolution.generated, unit="cand", unit_scale=True,
               disable=not progress, dynamic_ncols=True, desc="search")
    pending = evolution.pending
    try:
        with WorkerPool(evaluator, evolution.space, config.blocks_per_child, jobs, backend) as pool:
            while True:
                plan = evolution.plan(min(batch_size, total - evolution.generated))
                if not plan and not pending:
                    break
                results, children = pool.judge_and_breed(pending, plan)
                evolution.tell(pending, results)
                store.record(pending, results)
                pending = evolution.admit(plan, children, pool.to_arch)
                bar.update(len(plan))
                bar.set_postfix_str(_postfix(evolution), refresh=False)
                store.end_segment(evolution.generated)
                if store.checkpoint_due(evolution.generated):
                    store.save_checkpoint(config, evolution)
    finally:
        bar.close()
    store.end_segment(evolution.generated)
    store.save_checkpoint(config, evolution)


def _postfix(evolution: Evolution) -> str:
    best = "/".join(f"{m.score:.2f}" for m in evolution.best)
    counters = evolution.counters_
    share = counters["within_budget"] / max(1, counters["evaluated"])
    return f"best={best} in-budget={share:.0%}"


def _finish(config: SearchConfig, evolution: Evolution, evaluator: Evaluator, store: RunStore) -> SearchResult:
    store.close()
    space = evolution.space
    initial_score = float(evaluator._scorer()(space.initial))
    rungs = []
    for budgets, label, population in zip(config.rungs, config.rung_labels, evolution.populations_):
        best = population.best
        meta = {"score": best.score, "hash": best.hash, "macs": best.macs, "flops": 2 * best.macs,
                "params": best.params, "layers": best.layers, "latency_ms": best.latency_ms,
                "budgets": [b.text for b in budgets], "space": space.name,
                "resolution": config.resolution, "seed": config.seed}
        rungs.append(RungResult(budgets, label, best, population.members, store.write_best(label, best, meta)))
    has_latency = evaluator.latency is not None
    device = getattr(evaluator.latency_model(), "device", None) if has_latency else None
    counters = evolution.counters_
    summary = store.write_summary(config, counters, initial_score, rungs, device, has_latency)
    return SearchResult(tuple(rungs), counters["candidates"], counters["evaluated"], counters["within_budget"],
                        counters["duplicates"], store.seconds, initial_score, store.folder, summary)


# ---------------------------------------------------------------------------- public API
def search(space: SearchSpace | str | Path, budgets=(), *, ladder=None,
           latency: str | Path | LatencyModel | None = None, population: int = 256,
           candidates: int = 10000, blocks_per_child: int = 1, seed: int = 0, score: str = "madnas",
           stage_weights: Sequence[float] | str = DEFAULT_STAGE_WEIGHTS, score_options: dict | None = None,
           resolution: int | None = None, jobs: int = 1, backend: str = "loky", batch_size: int = 512,
           checkpoint_every: int = 10000, start_tries: int = 3000, out: str | Path | None = None,
           progress: bool = False, exist_ok: bool = False, detector=None, source: str = "",
           **old_names) -> SearchResult:
    """Evolve architectures of ``space`` under ``budgets``; see the module docstring.

    ``budgets``: ``Budget`` values, ``"kind=value"`` strings or a ``{kind: value}`` mapping.
    ``ladder``: ``"latency=0.08ms,0.12ms"`` (or a list of budgets of one kind) for one best
    architecture per limit from one shared search. ``latency``: a latency table path or any
    object with ``predict_ms(arch, resolution)``. ``detector``: a model recipe (shipped name,
    path or ``ModelRecipe``) whose wrap, neck and head surround every candidate, so that the
    latency budgets are the whole detector's, priced from the table at ``latency`` (the image
    is ``resolution``, doubled when a Focus stem feeds a 12-channel stem). ``out``: a run folder for the log,
    checkpoints and results (``None`` keeps everything in memory); it must be new or empty
    unless ``exist_ok``, and it is locked while the search runs. ``jobs`` and ``backend``
    change the speed, never the result. ``source`` (a recipe file) is named in errors.
    """
    stage_weights = _stage_weights("search", stage_weights, old_names)
    space = as_space(space)
    latency = _as_latency(latency)
    config = build_config(space, budgets, ladder, latency, population, candidates, blocks_per_child,
                          seed, score, stage_weights, score_options, resolution, batch_size, checkpoint_every,
                          start_tries, source, detector)
    check_jobs(jobs, source)
    check_backend(backend)
    if out is None:
        return _search_fresh(config, space, latency, None, jobs, backend, progress)
    out_dir = check_new_folder(out, "out", force=True)
    with owned_folder(out_dir):
        # Checked under the lock: a second writer started at the same moment sees the first's files.
        if _holds_search(out_dir):
            raise UserError(str(out_dir), "out", "already holds a search: resume it, or choose another folder")
        if not _search_without_progress(out_dir):  # that one is ours to start again
            check_new_folder(out_dir, "out", force=exist_ok)
        return _search_fresh(config, space, latency, out_dir, jobs, backend, progress)


def _holds_search(folder: Path) -> bool:
    """A checkpoint past the seeds: a search worth resuming (a damaged one too: never overwritten)."""
    if not (folder / CHECKPOINT_NAME).is_file():
        return False
    try:
        return load_checkpoint(folder)["counters"]["evaluated"] > 0
    except UserError:
        return True


def _search_without_progress(folder: Path) -> bool:
    """A search killed before its seeds were checkpointed: its settings alone, or a log without a
    checkpoint (as versions that wrote the settings later left it). Nothing in it is worth keeping."""
    started = (folder / CHECKPOINT_NAME).is_file() or (folder / CANDIDATES_NAME).is_file()
    return started and not _holds_search(folder)


def _search_fresh(config, space, latency, out_dir, jobs, backend, progress) -> SearchResult:
    evaluator = _evaluator(config, latency)
    evolution = _evolution(config, space)
    store = RunStore(out_dir, len(evaluator.rungs), config.checkpoint_every)
    seeds, results = evolution.start(evaluator)
    # The settings are the first durable write (a checkpoint with nothing evaluated): a run killed
    # before its seeds are checkpointed is started again from them by a rerun or --resume.
    store.save_checkpoint(config, evolution)
    store.create()
    evolution.tell(seeds, results)
    store.record(seeds, results)
    store.save_checkpoint(config, evolution)
    _run(config, evolution, evaluator, store, jobs, backend, progress)
    return _finish(config, evolution, evaluator, store)


def resume(run_dir: str | Path, *, latency: LatencyModel | None = None, jobs: int = 1,
           backend: str = "loky", progress: bool = False) -> SearchResult:
    """Continue the search saved in ``run_dir``; it ends as an uninterrupted run would have."""
    run_dir = Path(run_dir)
    load_checkpoint(run_dir)  # a folder that is not a run is refused before it is locked
    check_jobs(jobs)
    check_backend(backend)
    with lock_folder(run_dir):
        doc = load_checkpoint(run_dir)
        source = str(run_dir / "checkpoint.json")
        if doc["counters"]["evaluated"] == 0:  # killed before its seeds were checkpointed: start again
            try:
                config, space, latency = _stored_settings(doc, source, latency)
            except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
                raise UserError(source, "", f"damaged checkpoint ({err.__class__.__name__}: {err}); "
                                "start the search again") from None
            return _search_fresh(config, space, latency, run_dir, jobs, backend, progress)
        try:
            config, evolution, evaluator, store = _restore(doc, source, run_dir, latency)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
            # The checkpoint passed its format checks yet holds values of the wrong shape.
            raise UserError(source, "", f"damaged checkpoint ({err.__class__.__name__}: {err}); "
                            "start the search again") from None
        _run(config, evolution, evaluator, store, jobs, backend, progress)
        return _finish(config, evolution, evaluator, store)


def _stored_settings(doc: dict, source: str, latency):
    """The run's config, its space and the latency model to price with, from its checkpoint."""
    config = SearchConfig.from_json(doc["config"], source)
    space = space_from_dict(config.space, f"{source}: config.space")
    space = replace(space, source=config.space_source or space.source)
    stored = config.latency
    if stored is None:
        latency = None
    elif "path" in stored:
        if latency is None:
            latency = stored["path"]
    elif latency is None:
        raise UserError(source, "config.latency", f"this run used a {stored['object']} object as its latency "
                        "model; pass the same one again (resume(..., latency=...))")
    return config, space, latency


def _restore(doc: dict, source: str, run_dir: Path, latency):
    config, space, latency = _stored_settings(doc, source, latency)
    evaluator = _evaluator(config, latency)
    if len(doc["populations"]) != len(evaluator.rungs):
        raise UserError(source, "populations", "one population per rung expected")
    store = RunStore(run_dir, len(evaluator.rungs), config.checkpoint_every)
    told = store.reopen(doc)
    evolution = _evolution(config, space)
    evolution.load_state_dict(doc, told_hashes=told, source=source)
    return config, evolution, evaluator, store
