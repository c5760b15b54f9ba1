"""Atomic file writes: write a temporary sibling, then rename over the target."""

from __future__ import annotations

import errno
import os
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        # A failed or interrupted write must not leave a multi-MB temporary beside the target.
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            # The user asked for ``path``: a full or read-only disk names it, not the hidden
            # temporary (nor nothing, as a failed write() does).
            err.filename, err.filename2 = str(path), None
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
