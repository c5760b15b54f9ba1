"""Running the shards of a latency grid on a fleet of identical boards, as Ray tasks, and merging
them into one table (how the grid is split: ``shards.py``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..atomic import atomic_write_bytes
from ..errors import UserError
from ..runfolder import check_new_file
from .build import build_table
from .merge import merge_shards, shard_status
from .table import sidecar_path

RESOURCE = "latency_board"


def run_shards_with_ray(spaces, out: str | os.PathLike, count: int, folder: str | os.PathLike | None = None,
                        resource: str = RESOURCE, allow_partial: bool = False, force: bool = False,
                        **build_options):
    """Build ``count`` shards of the spaces' grid as Ray tasks and merge them into ``out``.

    Each task asks for one unit of the custom resource ``resource``: start every board's Ray
    node with ``--resources='{"latency_board": 1}'`` and no two shards ever share a board (two
    timings on one device falsify each other), whatever else the cluster runs. A task builds
    its shard on the board's own disk and returns the files; they are kept in ``folder``
    (default: ``<out>.shards/`` beside ``out``), and a shard already complete there is not
    measured again, so rerunning after a board failed redoes only the missing shards (one kept
    from a run with other settings is refused by the merge, by name). ``build_options`` go to ``build_table`` (device, dtype, batch, channel_step, ...).
    """
    try:
        import ray
    except ImportError:
        raise UserError("ray", "", "not installed: pip install 'tinynas[ray]'") from None

    out = check_new_file(out, "--out", force)  # before the fleet's hours, not after
    folder = Path(folder) if folder is not None else out.with_name(f"{out.stem}.shards")
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{out.stem}.shard-{i}-of-{count}.csv" for i in range(1, count + 1)]
    todo = [i for i, path in enumerate(paths, 1) if shard_status(path) != "complete"]
    task = ray.remote(_build_shard).options(resources={resource: 1}, max_retries=2)
    pending = {task.remote(spaces, i, count, paths[i - 1], build_options): i for i in todo}
    errors = []
    while pending:  # keep each shard the moment it arrives: a failure loses only its own
        done, _ = ray.wait(list(pending))
        index = pending.pop(done[0])
        files, error = ray.get(done[0])
        if error is not None:
            errors.append(error)
        else:
            _keep_shard(paths[index - 1], *files)
    if errors:
        raise UserError(*errors[0])
    return merge_shards(paths, out, allow_partial=allow_partial, force=force)


def _build_shard(spaces, index: int, count: int, path: Path, build_options: dict):
    """On a board: build one shard in a scratch folder; (its CSV and sidecar, None), or
    (None, the parts of the ``UserError`` that refused it, naming ``path`` for the scratch file)."""
    with tempfile.TemporaryDirectory(prefix="tinynas-shard-") as scratch:
        built = Path(scratch) / path.name
        try:
            build_table(spaces, built, shard=(index, count), progress=False, **build_options)
        except UserError as err:  # travels as its parts: its own __init__ makes it unpicklable
            return None, (err.source.replace(scratch, str(path.parent)), err.field, err.reason)
        return (built.read_bytes(), sidecar_path(built).read_bytes()), None


def _keep_shard(path: Path, csv: bytes, sidecar: bytes) -> None:
    # The sidecar last: a shard file without it reads as "not built" and is measured again.
    atomic_write_bytes(path, csv)
    atomic_write_bytes(sidecar_path(path), sidecar)
