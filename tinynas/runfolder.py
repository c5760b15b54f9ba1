"""Owning what a command writes: an advisory lock per run folder, plain names, no silent overwrite.

A lock is a file holding the writer's pid, host and command, with an ``flock`` on its open
handle. The kernel drops the ``flock`` when the holder exits, however it exits, so a lock file
left by a killed run is taken over and never blocks a resume; a live holder makes a second
writer fail at once with one line naming it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

from .atomic import dead_temporary, sweep_temporaries
from .errors import UserError

try:  # POSIX; elsewhere the lock file is written for people to read but locks nothing.
    import fcntl
except ImportError:  # pragma: no cover - not on the platforms CI runs
    fcntl = None

LOCK_NAME = ".tinynas.lock"


class RunLock:
    """Hold ``lock_path`` for the life of a ``with`` block (or until ``release``)."""

    def __init__(self, lock_path: str | os.PathLike, what: str):
        self.path = Path(lock_path)
        self.what = what
        self._handle = None

    def acquire(self) -> "RunLock":
        for _ in range(100):
            handle = self._open_and_lock()
            # A holder that just released unlinked the file: a lock won on that old inode guards
            # nothing, since the next writer creates a new one. Only the file at the path counts.
            if fcntl is None or _same_file(handle, self.path):
                break
            handle.close()
        else:  # pragma: no cover - a hundred releases in a row while we tried
            raise UserError(str(self.path.parent), "", f"cannot lock the {self.what}: it keeps changing hands")
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
                                 "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:6]])}) + "\n")
        handle.flush()
        self._handle = handle
        return self

    def _open_and_lock(self):
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+", encoding="utf-8")
        except OSError as err:
            raise UserError(str(self.path.parent), "", f"cannot lock the {self.what} ({err.strerror or err})") from None
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.seek(0)
                holder = _describe(handle.read())
                handle.close()
                raise UserError(str(self.path.parent), "",
                                f"the {self.what} is in use by {holder}; wait for it, or choose another") from None
        return handle

    def release(self) -> None:
        if self._handle is None:
            return
        handle, self._handle = self._handle, None
        try:
            # Unlink while still holding the lock, so no waiter can have opened the old inode.
            self.path.unlink(missing_ok=True)
        finally:
            handle.close()

    def __enter__(self) -> "RunLock":
        return self if self._handle is not None else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _same_file(handle, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except OSError:  # unlinked under us
        return False


def _describe(text: str) -> str:
    try:
        info = json.loads(text)
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["since"])))
        command = str(info.get("command") or "").strip()
        return f"pid {int(info['pid'])} on {info['host']} since {since}" + (f" (`{command}`)" if command else "")
    except (ValueError, KeyError, TypeError):
        return "another process"


def lock_folder(folder: str | os.PathLike, what: str = "run folder") -> RunLock:
    """Lock a run folder (created if missing) for one writer, and remove the temporaries that
    killed writers left in it (none of them can be writing now: the lock says so)."""
    lock = RunLock(Path(folder) / LOCK_NAME, what).acquire()
    sweep_temporaries(folder)
    return lock


@contextlib.contextmanager
def owned_folder(folder: str | os.PathLike, what: str = "run folder") -> Iterator[Path]:
    """Lock ``folder`` for one writer; a folder this call created and left empty is removed, so a
    run refused before its first file leaves nothing behind."""
    folder = Path(folder)
    created = not folder.exists()
    lock = lock_folder(folder, what)
    try:
        yield folder
    finally:
        lock.release()
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def lock_file(path: str | os.PathLike, what: str) -> RunLock:
    """Lock a single output file (a latency table) through a hidden sibling."""
    path = Path(path)
    lock = RunLock(path.with_name(f".{path.name}.lock"), what).acquire()
    # The file's own temporaries and its sidecar's (a table's .json), not the whole folder's.
    sweep_temporaries(path.parent, {path.name, path.with_suffix(".json").name})
    return lock


def plain_name(text: object, source: str, field: str) -> str:
    """A name that becomes one path component inside a run folder, never a path."""
    name = str(text).strip() if text is not None else ""
    if not name:
        raise UserError(source, field, "must not be empty")
    if name in (".", "..") or "/" in name or "\\" in name or "\x00" in name or Path(name).is_absolute():
        raise UserError(source, field, f"must be a plain name, not a path (got {name!r})")
    if len(name.encode("utf-8")) > 200:
        raise UserError(source, field, f"too long ({len(name)} characters; at most 200)")
    return name


# Where each kind of run lives when no folder is named. A search is numbered when its folder is
# taken (it resumes by folder, never by re-running the recipe); a training run or a chain keeps
# its folder, because running the same recipe again is how it resumes.
RUNS = Path("runs")
RUN_PARENTS = {"train": RUNS, "search": RUNS, "chain": RUNS / "chains"}
NUMBERED_KINDS = ("search",)


def run_dir_for(kind: str, name: str, out: str | os.PathLike | None = None) -> Path:
    """The folder of a ``kind`` run called ``name``: ``out`` when given, else ``runs/[chains/]<name>``
    (for a search, ``<name>-2``, ``-3``, ... when that one is taken)."""
    if kind not in RUN_PARENTS:
        raise ValueError(f"unknown run kind {kind!r} (known: {', '.join(RUN_PARENTS)})")
    folder = Path(out) if out else RUN_PARENTS[kind] / name
    if kind not in NUMBERED_KINDS or not folder.exists():
        return folder
    n = 2
    while Path(f"{folder}-{n}").exists():
        n += 1
    return Path(f"{folder}-{n}")


def check_new_file(path: str | os.PathLike, field: str, force: bool = False) -> Path:
    """``path`` may be written: it does not exist, or ``force`` says to replace a file."""
    path = Path(path)
    if path.is_dir():
        raise UserError(str(path), field, "is a folder; name a file")
    if path.exists() and not force:
        raise UserError(str(path), field, "already exists; pass --force to replace it")
    if path.parent.exists() and not path.parent.is_dir():
        raise UserError(str(path.parent), field, "is a file, not a folder")
    return path


def check_new_folder(path: str | os.PathLike, field: str, force: bool = False) -> Path:
    """``path`` may be a new run folder: missing, empty, or ``force`` says to write into it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(str(path), field, "is a file, not a folder")
    # A lock and a killed write's temporary are no content: a run killed at its first write reruns.
    if path.is_dir() and not force and any(p.name != LOCK_NAME and not dead_temporary(p.name)
                                           for p in path.iterdir()):
        raise UserError(str(path), field, "already holds files; choose a new folder or pass --force to write into it")
    return path


def check_disk_space(folder: str | os.PathLike, needed: int, field: str, what: str) -> None:
    """Refuse to start writing ``needed`` bytes under ``folder`` when its disk has less free."""
    probe = Path(folder).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed > free:
        raise UserError(str(folder), field, f"{what} needs ~{needed / 2 ** 30:.3g} GiB of disk, "
                                            f"{free / 2 ** 30:.3g} GiB free")
