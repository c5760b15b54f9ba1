"""Old spellings of flags, keys and keyword arguments, accepted for one release with a note.

One name per concept (``latency_db``, ``stage_weights``, ``batch_size``, ``size``) replaced
several; a command line, recipe or script written with an old one still works and says, once
per spelling, on stderr, what to write instead.
"""

from __future__ import annotations

import sys

_SAID: set[tuple[str, str]] = set()
# Every renamed settings key, old -> new (filled by the sections that declare RENAMED_KEYS), so
# that "who set this field" finds a key=value that used the old spelling.
KEYS: dict[str, str] = {}


def renamed_keys(pairs: dict[str, str]) -> dict[str, str]:
    """Declare a section's renamed keys (old -> new); returns ``pairs`` for ``RENAMED_KEYS``."""
    KEYS.update(pairs)
    return pairs


def current_key(dotted: str) -> str:
    """``dotted`` with its last part spelled as today (``weights`` -> ``stage_weights``)."""
    *parents, last = dotted.split(".")
    return ".".join([*parents, KEYS.get(last, last)])


def note_renamed(where: str, old: str, new: str) -> None:
    """Say once per process that ``old`` (given at ``where``) is now spelled ``new``."""
    if (old, new) in _SAID:
        return
    _SAID.add((old, new))
    print(f"tinynas: note: {where}: {old} is now {new} (the old spelling is accepted until the next release)",
          file=sys.stderr)


def renamed_keyword(function: str, options: dict, old: str, new: str, value: object, default: object = None) -> object:
    """The value of keyword ``new`` of ``function``, taking the old keyword ``old`` (in
    ``options``, popped) when the caller still uses it; both at once is a ``TypeError``."""
    if old not in options:
        return value
    if value is not default:
        raise TypeError(f"{function}() got both {old}= (its old name) and {new}=")
    note_renamed(f"{function}()", f"{old}=", f"{new}=")
    return options.pop(old)
