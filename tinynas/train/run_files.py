"""What a training run leaves in its folder besides checkpoints: the recipe, metrics, a plot."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path


from ..atomic import atomic_write_bytes, atomic_write_text, atomic_write_yaml
from .box_losses import BOX_LOSSES
from .cls_losses import CLS_LOSSES

# Every loss column a run may log: the total, whichever class and box losses the recipe chose,
# DFL, and the distillation term. A plot draws those its metrics.csv has.
LOSS_COLUMNS = ("loss", *CLS_LOSSES, *BOX_LOSSES, "dfl", "distill")


def write_recipe(path: Path, recipe) -> None:
    """The resolved, self-contained recipe (what ``--resume`` and checkpoints rebuild from)."""
    atomic_write_yaml(path, recipe.to_dict())


class MetricsLog:
    """``metrics.csv``: one row per epoch; columns grow when a new metric first appears."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def rows(self) -> list[dict]:
        if not self.path.is_file():
            return []
        with open(self.path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))

    def reset(self) -> None:
        if self.path.exists():
            self.path.unlink()

    def keep_epochs(self, last_epoch: int) -> None:
        """Drop the rows of epochs after ``last_epoch`` (a resume from there writes them again)."""
        rows = self.rows()
        kept = [r for r in rows if int(float(r["epoch"])) <= last_epoch]
        if len(kept) < len(rows):
            self._write(kept)

    def append(self, row: dict) -> None:
        self._write([r for r in self.rows() if int(float(r["epoch"])) < int(row["epoch"])] + [row])

    def _write(self, rows: list[dict]) -> None:
        columns: list[str] = []
        for r in rows:
            columns += [c for c in r if c not in columns]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, restval="")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
        atomic_write_text(self.path, out.getvalue())


def plot_metrics(csv_path: Path, png_path: Path) -> bool:
    """Loss and mAP per epoch as a PNG; False (and nothing written) without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = MetricsLog(csv_path).rows()
    if not rows:
        return False
    epochs = [int(float(r["epoch"])) for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key in LOSS_COLUMNS:
        values = [float(r[key]) if r.get(key) not in (None, "") else float("nan") for r in rows]
        if any(v == v for v in values):
            left.plot(epochs, values, label=key)
    left.set_xlabel("epoch")
    left.set_title("training losses")
    if left.lines:
        left.legend()
    for key in ("AP", "AP50"):
        points = [(e, float(r[key])) for e, r in zip(epochs, rows) if r.get(key) not in (None, "")]
        if points:
            right.plot(*zip(*points), marker="o", label=key)
    right.set_xlabel("epoch")
    right.set_title("val mAP")
    if right.lines:
        right.legend()
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=80)
    plt.close(fig)
    atomic_write_bytes(png_path, image.getvalue())
    return True
