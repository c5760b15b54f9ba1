"""The distillation chain: train the largest model, then distil each next one from the previous.

A chain file lists stages in order (L, M, S, optionally T). Each stage is a training recipe;
``common`` is merged into every stage's recipe and a stage's own ``overrides`` on top. Stage
``k`` learns from stage ``k-1`` (or the stage named by ``teacher``); with ``baseline: true``
each distilled stage is also trained without a teacher, so the final table shows what
distillation gained; with ``baseline: auto`` only a stage whose teacher was worth less than
``BASELINE_WORTH`` of the full weight on average (``worth.py``: it did not lead the student
by the margin throughout), where the gain is uncertain. Every run lives in ``<out>/<stage>[-plain]/``: a finished run is
skipped, an interrupted one resumed, so rerunning a killed chain finishes it.
"""

from __future__ import annotations

import copy
import csv
import io
import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

from ..atomic import atomic_write_text
from ..config import Overrides, Source, unknown_key
from ..errors import UserError
from ..fileio import read_yaml
from ..runfolder import lock_folder, plain_name, run_dir_for
from ..train.recipe import TrainRecipe, parse_train_recipe
from ..train.run import TrainRun
from ..train.trainer import settle_finished_run, train
from .term import distillation_term

CHAIN_KEYS = {"name", "out", "common", "stages", "distill", "baseline", "latency_db"}
AUTO_BASELINE = "auto"
# With baseline: auto, a distilled stage whose teacher was worth at least this (of the full
# weight, averaged over its epochs) is not trained again without it: the teacher led the student
# by about worth_margin or more throughout.
BASELINE_WORTH = 0.9
STAGE_KEYS = {"name", "recipe", "teacher", "overrides"}


@dataclass(frozen=True)
class Stage:
    name: str
    recipe: TrainRecipe
    teacher: str | None  # name of the teacher stage


@dataclass(frozen=True)
class Chain:
    name: str
    out: Path
    stages: tuple[Stage, ...]
    baseline: bool | str  # True, False or "auto" (a plain run where the teacher's worth fell short)
    latency_db: str | None
    source: str


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_chain(path: str | os.PathLike, overrides: Overrides = Overrides()) -> Chain:
    """The chain file ``path`` with ``overrides`` (``common.train.epochs=3``, ``out=DIR``) set on
    it; an error names the file, or the ``key=value`` that set the field."""
    path = Path(path)
    source = str(path)
    src = Source(source, overrides)
    doc = overrides.apply(read_yaml(path, "chain file"), source)
    for key in doc:
        if key not in CHAIN_KEYS:
            raise src.error(str(key), unknown_key("key", key, sorted(CHAIN_KEYS)))
    stages_doc = doc.get("stages")
    if not isinstance(stages_doc, list) or not stages_doc:
        raise src.error("stages", "expected a non-empty list of stages")
    # Names become folders (runs/chains/<name>, <out>/<stage>): one path component each.
    name = plain_name(doc.get("name") or path.stem, src.of("name"), "name")
    if doc.get("out") is not None and not isinstance(doc.get("out"), str):
        raise src.error("out", f"expected a folder path, got {doc.get('out')!r}")
    out = run_dir_for("chain", name, doc.get("out"))
    common = doc.get("common") or {}
    distill = doc.get("distill") or {}
    if not isinstance(common, dict) or not isinstance(distill, dict):
        raise src.error("common", "common and distill must be mappings")
    baseline = doc.get("baseline", True)
    if not isinstance(baseline, bool) and baseline != AUTO_BASELINE:
        raise src.error("baseline", f"expected true, false or auto, got {baseline!r}")

    stages: list[Stage] = []
    seen: set[str] = set()
    for i, raw in enumerate(stages_doc):
        stages.append(_load_stage(raw, f"stages[{i}]", path, out, common, distill, stages, seen))
        seen.add(stages[-1].name)
    latency_db = doc.get("latency_db")
    return Chain(name, out, tuple(stages), baseline, str(latency_db) if latency_db else None, source)


def _load_stage(raw, where: str, path: Path, out: Path, common: dict, distill: dict, stages: list[Stage],
                seen: set[str]) -> Stage:
    """``stages[i]`` of the chain file ``path``: its recipe with the chain's common settings, its
    overrides and (with a teacher, by default the stage before) the chain's distill section."""
    source = str(path)
    if not isinstance(raw, dict):
        raise UserError(source, where, "expected a mapping with name and recipe")
    for key in raw:
        if key not in STAGE_KEYS:
            raise UserError(source, f"{where}.{key}", unknown_key("key", key, sorted(STAGE_KEYS)))
    for key in ("name", "recipe"):
        if not isinstance(raw.get(key), str) or not raw.get(key):
            raise UserError(source, f"{where}.{key}", "missing")
    plain_name(raw["name"], source, f"{where}.name")
    if raw["name"] in seen:
        raise UserError(source, f"{where}.name", f"duplicate stage name {raw['name']!r}")
    teacher = raw.get("teacher", stages[-1].name if stages else None)
    if teacher is not None and teacher not in seen:
        raise UserError(source, f"{where}.teacher", f"{teacher!r} is not an earlier stage")
    recipe_path = Path(raw["recipe"])
    if not recipe_path.is_absolute():
        recipe_path = path.parent / recipe_path
    stage_doc = read_yaml(recipe_path, "stage recipe")
    if not isinstance(stage_doc, dict):
        raise UserError(str(recipe_path), "", "a recipe must be a YAML mapping")
    overrides = raw.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise UserError(source, f"{where}.overrides", "expected a mapping")
    merged = _merge(_merge(stage_doc, common), overrides)
    if teacher is not None:
        merged["distill"] = _merge(merged.get("distill") or {}, distill)
    merged["out"] = str(out / raw["name"])
    merged.setdefault("name", raw["name"])
    recipe = parse_train_recipe(merged, f"{source} ({where})", recipe_path.parent)
    return Stage(raw["name"], recipe, teacher)


class ChainClock:
    """Seconds per epoch of the trainings this chain ran so far, for "about N min left".

    Teachers train first and are the larger models, so the estimate starts high and falls."""

    def __init__(self, epochs_left: int):
        self.epochs_left, self.epochs_timed, self.seconds = epochs_left, 0, 0.0

    def timed(self, epochs: int, seconds: float, counted: int) -> None:
        """A training of ``counted`` epochs is over; ``epochs`` of them ran here in ``seconds``."""
        self.epochs_left -= counted
        if epochs > 0:
            self.epochs_timed += epochs
            self.seconds += seconds

    def left(self) -> str:
        if not self.epochs_timed or self.epochs_left <= 0:
            return ""
        minutes = self.seconds / self.epochs_timed * self.epochs_left / 60
        return f" (about {minutes:.0f} min left)" if minutes >= 1 else " (under a minute left)"


def _run(recipe: TrainRecipe, progress: bool, log, place: str = "", clock: ChainClock | None = None) -> TrainRun:
    """Train, resume or skip (when finished) the run of ``recipe``; the run, read back.
    ``place`` ("model 2/3: ") leads its log line; ``clock`` times it for the chain's estimate."""
    run = TrainRun(recipe.run_dir)
    # The stage's epochs, not the run's own recipe's: a chain edited to train longer resumes.
    if run.finished(recipe.train.epochs):
        settle_finished_run(run)
        log(f"{place}{recipe.run_dir}: finished earlier, skipped")
        if clock is not None:
            clock.timed(0, 0.0, recipe.train.epochs)
        return run
    resume = run.last_checkpoint() is not None
    before, started = run.epochs_done() if resume else 0, time.monotonic()
    log(f"{place}{recipe.run_dir}: {'resuming' if resume else 'training'}{clock.left() if clock else ''}")
    train(recipe, resume=resume, progress=progress, extra_loss=distillation_term(recipe.distill),
          source=str(recipe.run_dir))  # a stage has no file of its own; its folder names it
    if clock is not None:
        clock.timed(recipe.train.epochs - before, time.monotonic() - started, recipe.train.epochs)
    return run


def _size_and_latency(recipe: TrainRecipe, latency_db: str | None) -> dict:
    from ..detect.costs import recipe_costs

    total = recipe_costs(recipe.model, recipe.data.size, fused=True)[-1]
    row = {"params_M": total.params / 1e6, "GFLOPs": total.flops / 1e9, "latency_ms": math.nan}
    if latency_db:
        from ..latency import load_predictor

        from ..plan import table_view

        # What the table prices: behind a Focus stem the searched stem reads 12 channels of
        # half the image, at stride 1.
        arch, size = table_view(recipe.model.backbone.arch, recipe.data.size, recipe.model.backbone.focus)
        try:
            row["latency_ms"] = load_predictor(latency_db).predict_ms(arch, size)
        except UserError:
            pass  # the table does not cover this backbone: leave the cell empty
    return row


def run_chain(chain: Chain, progress: bool = True, log=print) -> list[dict]:
    """Run (or finish) every stage; write ``summary.md`` and ``summary.csv``; return the rows."""
    with lock_folder(chain.out, "chain folder"):
        return _run_stages(chain, progress, log)


def _run_stages(chain: Chain, progress: bool, log) -> list[dict]:
    best: dict[str, Path] = {}
    rows = []
    distilled = sum(s.teacher is not None for s in chain.stages)
    # "auto" counts its plain runs as they are decided: the totals are the most it may train.
    total = len(chain.stages) + (distilled if chain.baseline else 0)
    done = 0
    clock = ChainClock(sum(s.recipe.train.epochs * (2 if s.teacher is not None and chain.baseline else 1)
                           for s in chain.stages))

    def place() -> str:
        nonlocal done
        done += 1
        return f"model {done}/{total}: "

    for stage in chain.stages:
        recipe = stage.recipe
        if stage.teacher is not None:
            recipe = replace(recipe, distill=replace(recipe.distill, teacher=str(best[stage.teacher])))
        plain = replace(recipe, distill=replace(recipe.distill, teacher=""), out=str(chain.out / f"{stage.name}-plain"))
        plain_run = None
        if stage.teacher is not None and chain.baseline is True:
            plain_run = _run(plain, progress, log, place(), clock)
        run = _run(recipe, progress, log, place(), clock)
        worth = math.nan
        if stage.teacher is not None and chain.baseline == AUTO_BASELINE:
            worth = mean_worth(run)
            if worth >= BASELINE_WORTH:
                log(f"{stage.name}: the teacher was worth {worth:.2f} of the full weight on average, at least "
                    f"{BASELINE_WORTH}: distillation pays, no plain run")
                clock.timed(0, 0.0, recipe.train.epochs)
                done += 1
            else:
                log(f"{stage.name}: the teacher was worth {worth:.2f} of the full weight on average"
                    f"{'' if worth == worth else ' (not measured)'}, under {BASELINE_WORTH}: "
                    "training it without its teacher too, to keep the better")
                plain_run = _run(plain, progress, log, place(), clock)
        best[stage.name] = run.best_checkpoint()
        metrics = run.best_metrics()  # the epoch best.pt holds, as the design's report states it
        row = {"stage": stage.name, "teacher": stage.teacher or "", **_size_and_latency(recipe, chain.latency_db),
               "AP": metrics["AP"], "AP50": metrics["AP50"], "AP_plain": math.nan, "AP50_plain": math.nan,
               "worth": worth}
        if plain_run is not None:
            plain_metrics = plain_run.best_metrics()
            row.update(AP_plain=plain_metrics["AP"], AP50_plain=plain_metrics["AP50"])
        rows.append(row)
    write_summary(chain.out, rows)
    return rows


def mean_worth(run: TrainRun) -> float:
    """The teacher's worth (the factor on the distillation weight, ``worth.py``) averaged over the
    run's epochs; NaN when the run did not measure it (a fixed weight, or worth_margin 0)."""
    values = [float(row["distill_worth"]) for row in run.metrics() if row.get("distill_worth") not in (None, "")]
    return sum(values) / len(values) if values else math.nan


COLUMNS = ("stage", "teacher", "params_M", "GFLOPs", "latency_ms", "AP", "AP50", "AP_plain", "AP50_plain", "worth")


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def format_markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_summary(out: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    for r in rows:
        writer.writerow({c: _cell(r[c]) for c in COLUMNS})
    atomic_write_text(out / "summary.csv", buffer.getvalue())
    atomic_write_text(out / "summary.md", format_markdown(rows))
