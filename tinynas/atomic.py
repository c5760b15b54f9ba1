"""Atomic file writes: write a temporary sibling, then rename over the target.

Every temporary is named ``.<target name>.tmp<pid>`` (the writer's pid), so that one sweep,
run by whoever takes a run folder's lock, finds the temporaries of writers killed mid-write
and removes those whose writer is gone (``sweep_temporaries``).
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from .crashpoints import boundary

_TEMPORARY = re.compile(r"^\..+\.tmp(\d+)$")


def temporary_path(path: str | os.PathLike) -> Path:
    """The temporary this process writes ``path`` through."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
    tmp = temporary_path(path)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        boundary(path, "before")
        os.replace(tmp, path)
    except BaseException as err:
        # A failed or interrupted write must not leave a multi-MB temporary beside the target.
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            # The user asked for ``path``: a full or read-only disk names it, not the hidden
            # temporary (nor nothing, as a failed write() does).
            err.filename, err.filename2 = str(path), None
        raise
    boundary(path, "after")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_yaml(path: str | os.PathLike, doc) -> None:
    """``doc`` as YAML, keys in the order given (recipes read top-down)."""
    import yaml

    atomic_write_text(path, yaml.safe_dump(doc, sort_keys=False))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def dead_temporary(name: str) -> bool:
    """Whether ``name`` is a temporary whose writer no longer runs (left by a killed write)."""
    match = _TEMPORARY.match(name)
    return match is not None and not _alive(int(match.group(1)))


def sweep_temporaries(folder: str | os.PathLike, targets: set[str] | None = None) -> list[Path]:
    """Remove the temporaries under ``folder`` whose writer pid no longer runs; the removed paths.
    ``targets``: only the temporaries of these file names, in ``folder`` itself.

    Safe only under the folder's lock: then no live tinynas writer of this folder exists but
    ourselves, and a live pid (ours, or a reused one) keeps its file.
    """
    folder = Path(folder)
    if targets is not None:
        listing = [(folder, [p.name for p in folder.glob(".*.tmp*") if p.name[1:].rsplit(".tmp", 1)[0] in targets])]
    else:
        listing = [(Path(root), files) for root, _, files in os.walk(folder)]
    removed = []
    for root, files in listing:
        for name in files:
            if not dead_temporary(name):
                continue
            try:
                (root / name).unlink()
            except (FileNotFoundError, IsADirectoryError):
                continue
            removed.append(root / name)
    return removed
