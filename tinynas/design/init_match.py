"""Design's ``--init``: each rung starts from a given checkpoint of its own architecture.

A design searches its rungs' backbones, so which weights fit a rung is known only after the
search: the checkpoints are gathered and checked before it (every file readable, none fused),
and each rung then takes the first one whose model is its own, the class count aside (the
class rows of new classes start fresh, as ``train.init`` does). The usual source is an earlier
design folder on other data: the same budget, space and seed search the same networks.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Sequence

from ..checkpoint import load_checkpoint
from ..detect.model_recipe import ModelRecipe
from ..detect.recipe_difference import model_difference
from ..errors import UserError

FLAG = "--init"


def gather_checkpoints(paths: Sequence[str]) -> list[Path]:
    """The checkpoint files ``paths`` name: a file as it is, a folder as every best.pt under it
    (a design folder or a training run), in path order; each one readable and not fused."""
    found: list[Path] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            inside = sorted(path.rglob("best.pt"))
            if not inside:
                raise UserError(FLAG, text, "no best.pt under this folder: give a design folder, a training run "
                                "or a checkpoint file")
            found += inside
        elif path.is_file():
            found.append(path)
        else:
            raise UserError(FLAG, text, "no such file or folder")
    for path in found:
        if _stored(path)[1]:
            raise UserError(FLAG, str(path), "a fused (deployment) checkpoint: give a training run's best.pt or "
                            "last.pt, whose weights are not re-parameterised")
    return [p.resolve() for p in dict.fromkeys(found)]


def checkpoint_for(recipe: ModelRecipe, checkpoints: Sequence[Path]) -> Path | None:
    """The first of ``checkpoints`` that holds ``recipe``'s model (any class count), or None."""
    mine = recipe.to_dict()
    for path in checkpoints:
        theirs = _stored(path)[0].with_num_classes(recipe.head.num_classes).to_dict()
        if model_difference(theirs, mine) is None:
            return path
    return None


def _stored(path: Path) -> tuple[ModelRecipe, bool]:
    """A checkpoint's model and whether it is fused, read once per file version: the check before
    the search and every rung's match after it would otherwise load each file's weights again."""
    stat = Path(path).stat()
    return _read_stored(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=64)
def _read_stored(path: str, mtime_ns: int, size: int) -> tuple[ModelRecipe, bool]:
    ckpt = load_checkpoint(path)
    return ckpt.recipe, ckpt.fused
