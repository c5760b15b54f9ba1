"""Crash points: a hook at every durable write, so tests can kill a job exactly there.

Each durable write (an atomic rename, an fsynced append) calls ``boundary(path, "before")``
just before it commits and ``boundary(path, "after")`` just after. Two environment variables
drive the hook, and without them it does nothing but count:

- ``TINYNAS_CRASH_AT=<n>:<before|after>`` kills the process with SIGKILL at that point of the
  process's ``n``-th durable write (counted from 1), the way a power cut or ``kill -9`` would;
  ``<name>#<k>:<before|after>`` at its ``k``-th write of a file named ``name`` (a resumed job
  writes fewer files first, so "the end of the next stage" has no fixed ``n``);
- ``TINYNAS_CRASH_LOG=<file>`` appends one line per write, ``<n> <path>``, so a test can list the
  boundaries an uninterrupted run passes and then kill a rerun at each one in turn.

The count is per process: a forked child starts again from zero, so a worker never shifts
its parent's numbering.
"""

from __future__ import annotations

import os
import signal

CRASH_AT = "TINYNAS_CRASH_AT"
CRASH_LOG = "TINYNAS_CRASH_LOG"
WHEN = ("before", "after")

_counted = {"pid": None, "writes": 0, "by_name": {}}


def boundary(path: str | os.PathLike, when: str) -> None:
    """Called at ``when`` ("before" or "after") of one durable write of ``path``."""
    if _counted["pid"] != os.getpid():
        _counted.update(pid=os.getpid(), writes=0, by_name={})
    name = os.path.basename(os.fspath(path))
    by_name = _counted["by_name"]
    if when == "before":
        _counted["writes"] += 1
        by_name[name] = by_name.get(name, 0) + 1
        log = os.environ.get(CRASH_LOG)
        if log:
            # Opened and closed per line: a SIGKILL a moment later must not lose it.
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(f"{_counted['writes']} {os.fspath(path)}\n")
    target = os.environ.get(CRASH_AT)
    if target and target in (f"{_counted['writes']}:{when}", f"{name}#{by_name.get(name, 0)}:{when}"):
        os.kill(os.getpid(), signal.SIGKILL)
