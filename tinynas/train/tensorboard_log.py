"""TensorBoard logging of a training run (``train.tensorboard: true``), as trainer callbacks.

Every number of an epoch's ``metrics.csv`` row goes to ``RUN/tensorboard`` at that epoch: the
evaluation's (AP, AP50, ..., P, R, F1) under ``val/``, the rest (losses, lr, distillation
weights, seconds) under ``train/``. A resumed run opens the folder with ``purge_step`` at its
first epoch, so TensorBoard drops what the killed run logged past its last checkpoint instead of
drawing those epochs twice. Written through ``torch.utils.tensorboard`` (the ``tensorboard``
extra); the trainer checks that it is installed before the first epoch.
"""

from __future__ import annotations

from pathlib import Path

FOLDER = "tensorboard"
PACKAGES = ("tensorboard",)
# metrics.csv columns that come from evaluating the val split.
VAL_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "P", "R", "F1", "conf_F1")


def scalars(row: dict) -> dict[str, float]:
    """TensorBoard tag -> value of one metrics row; empty cells (no evaluation that epoch) and
    pycocotools' -1 (no object of that size in val) are left out."""
    tags = {}
    for key, value in row.items():
        if key == "epoch" or value is None or value == "":
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if key in VAL_KEYS:
            if number >= 0:
                tags[f"val/{key}"] = number
        else:
            tags[f"train/{key}"] = number
    return tags


class TensorBoardLog:
    """The trainer's ``train_start`` / ``epoch_end`` / ``train_end`` handlers."""

    def __init__(self, run_dir: Path):
        self.folder = Path(run_dir) / FOLDER
        self.writer = None

    def train_start(self, trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # Steps are the rows' epochs, 1-based as metrics.csv counts them; a resume purges from its first.
        self.writer = SummaryWriter(log_dir=str(self.folder), purge_step=trainer.start_epoch + 1
                                    if trainer.start_epoch else None)

    def epoch_end(self, trainer, row: dict) -> None:
        for tag, value in scalars(row).items():
            self.writer.add_scalar(tag, value, int(row["epoch"]))
        self.writer.flush()  # a killed run keeps what it logged

    def train_end(self, trainer, result) -> None:
        if self.writer is not None:
            self.writer.close()
