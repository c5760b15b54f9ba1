"""A training run folder read back: the one place that knows what ``train`` leaves in it.

``runs/<name>/`` holds ``recipe.yaml`` (the resolved recipe), ``last.pt`` (EMA weights plus the
resume state, with the number of epochs done), ``best.pt`` (written when the val AP improves),
``metrics.csv`` (a row an epoch) and ``results.png``.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path

from ..checkpoint import load_checkpoint
from ..errors import UserError
from ..fileio import read_yaml
from .recipe import TrainRecipe, load_train_recipe
from .run_files import MetricsLog


class TrainRun:
    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.recipe_path = self.run_dir / "recipe.yaml"
        self.last_path = self.run_dir / "last.pt"
        self.best_path = self.run_dir / "best.pt"
        self.metrics_path = self.run_dir / "metrics.csv"
        self.plot_path = self.run_dir / "results.png"
        self.repopt_scales_path = self.run_dir / "repopt_scales.pt"  # RepOptimizer's factors, for a resume

    def started(self) -> bool:
        """True once a training has written its recipe here (what ``--resume`` needs)."""
        return self.recipe_path.is_file()

    def recipe(self) -> TrainRecipe:
        """The run's own resolved recipe, its output folder being this folder wherever it now is."""
        if not self.started():
            raise UserError(str(self.run_dir), "recipe.yaml", "not a training run folder (it has no recipe.yaml)")
        return replace(load_train_recipe(self.recipe_path), out=str(self.run_dir))

    def last_checkpoint(self) -> Path | None:
        """``last.pt``: the weights and state to resume from; None before the first save."""
        return self.last_path if self.last_path.is_file() else None

    def best_checkpoint(self) -> Path | None:
        """The weights to use: ``best.pt``, or ``last.pt`` when no evaluation ever gave an AP
        (None when neither was written)."""
        return self.best_path if self.best_path.is_file() else self.last_checkpoint()

    def epochs_done(self) -> int:
        """Epochs saved in ``last.pt`` (0 without one): where a resume starts."""
        last = self.last_checkpoint()
        return 0 if last is None else int(load_checkpoint(last).extra.get("epoch", 0))

    def planned_epochs(self) -> int:
        """``train.epochs`` of the run's own recipe."""
        doc = read_yaml(self.recipe_path, "recipe file")
        train = doc.get("train") if isinstance(doc, dict) else None
        epochs = train.get("epochs") if isinstance(train, dict) else None
        if not isinstance(epochs, int) or isinstance(epochs, bool):
            raise UserError(str(self.recipe_path), "train.epochs", f"expected a whole number, got {epochs!r}")
        return epochs

    def finished(self, epochs: int | None = None) -> bool:
        """Trained to ``epochs`` (default: the epochs its own recipe asks for)."""
        if self.last_checkpoint() is None:
            return False
        return self.epochs_done() >= (self.planned_epochs() if epochs is None else epochs)

    def metrics(self) -> list[dict]:
        """The rows of ``metrics.csv`` as written (strings), oldest first."""
        return MetricsLog(self.metrics_path).rows()

    def best_metrics(self) -> dict:
        """AP and AP50 of the best evaluated epoch, the one ``best.pt`` holds (the first of equal
        ones, as training keeps it), and that epoch; NaN and None before any evaluation."""
        rows = [r for r in self.metrics() if r.get("AP") not in (None, "")]
        if not rows:
            return {"AP": math.nan, "AP50": math.nan, "epoch": None}
        best = max(rows, key=lambda r: float(r["AP"]))
        return {"AP": float(best["AP"]), "AP50": float(best["AP50"]), "epoch": int(float(best["epoch"]))}

    def final_metrics(self) -> dict[str, float]:
        """AP and AP50 of the last evaluated epoch (NaN before any evaluation)."""
        rows = [r for r in self.metrics() if r.get("AP") not in (None, "")]
        if not rows:
            return {"AP": math.nan, "AP50": math.nan}
        return {k: float(rows[-1][k]) for k in ("AP", "AP50")}
