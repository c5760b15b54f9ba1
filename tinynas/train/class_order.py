"""A checkpoint's classes meet a dataset's: matched by name, never by position alone.

A detector's output ``k`` is its checkpoint's ``class_names[k]``; a dataset's label ``j`` is its
``j``-th category in id order. The same names in another order (categories renumbered) are
mapped; other names are refused, since scoring them would compare different classes.
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from ..errors import UserError


def class_order(checkpoint_names: Sequence[str], dataset_names: Sequence[str], source: str,
                dataset: str) -> list[int] | None:
    """For each dataset label, the checkpoint output that predicts it; ``None`` when they are
    already in the same order. A ``UserError`` naming ``source`` when the names differ."""
    mine, theirs = list(checkpoint_names), list(dataset_names)
    if mine == theirs:
        return None
    if len(set(mine)) == len(mine) and sorted(mine) == sorted(theirs):
        return [mine.index(name) for name in theirs]
    only_mine = [n for n in mine if n not in theirs]
    only_theirs = [n for n in theirs if n not in mine]
    detail = f"{only_mine[:3]} only in the checkpoint, {only_theirs[:3]} only in the dataset" \
        if only_mine or only_theirs else "a name repeats"
    raise UserError(source, "class_names", f"the checkpoint's {len(mine)} classes are not {dataset}'s "
                    f"{len(theirs)} ({detail})")


class ReorderedClasses(nn.Module):
    """``model`` with its class scores in the dataset's label order (``order[j]``: its output for label j)."""

    def __init__(self, model: nn.Module, order: Sequence[int]):
        super().__init__()
        self.model = model
        self.order = list(order)

    def forward(self, images):
        scores, boxes = self.model(images)
        return scores[..., self.order], boxes
