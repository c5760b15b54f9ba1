"""One grammar for the commands whose settings are a dataclass: ``tinynas COMMAND [FILE]
key=value ... --flag value ...``.

Each ``--flag`` is another spelling of a settings key, generated from the dataclass field (its
help, default and unit are written once, in the dataclass); ``key=value`` takes the field's
name. Both become ``Overrides`` (a flag after the ``key=value`` settings: it is the more specific
spelling), read by ``config.read_section``, so an error names the flag or ``key=`` that set
the value.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Literal, Sequence, get_args, get_origin, get_type_hints

from ..config import COMMAND_LINE, Override, Overrides, Source, help_text, parse_override, read_section
from ..errors import UserError
from .argtypes import old_spellings


@dataclass(frozen=True)
class Flag:
    """The ``--flag`` of settings key ``key``."""

    key: str
    spelling: str = ""  # default: --key-with-dashes
    metavar: str = ""
    old: tuple[str, ...] = ()  # former spellings, accepted for one release with a note
    text: bool = False  # taken as written (a path, a budget), not read as a YAML scalar
    many: str = ""  # "+": several values after the flag; "append": the flag repeated
    negate: bool = False  # a boolean's flag that sets it False (--no-draw for draw)
    help: str = ""  # instead of the field's (a negating flag says what it does)

    @property
    def option(self) -> str:
        return self.spelling or "--" + self.key.replace("_", "-")


def add_settings(parser: argparse.ArgumentParser, cls: type, flags: Sequence[Flag], example: str,
                 words_in: str = "") -> None:
    """``KEY=VALUE`` settings and one flag per entry of ``flags``, their help from ``cls``.

    ``words_in``: the dest of a positional taking several words (``SHARD ...``); it swallows the
    ``KEY=VALUE`` words after it, which ``given_settings`` hands back to the settings."""
    parser.add_argument("overrides", metavar="KEY=VALUE", nargs="*",
                        help=f"settings by name, before or after the flags, e.g. {example}")
    if words_in:
        parser.set_defaults(settings_words_in=words_in)
    described = {f.name: f for f in fields(cls)}
    hints = get_type_hints(cls)
    for flag in flags:
        field = described[flag.key]
        # A boolean's flag takes no value (true, or false for a negating one); a boolean that may
        # also be a word (baselines: auto) gets the word by key=value.
        if hints[flag.key] is bool or bool in get_args(hints[flag.key]):
            text = help_text(field).replace(" (default False)", "").replace(" (default True)", "")
            action = parser.add_argument(flag.option, dest=flag.key, action="store_const", const=not flag.negate,
                                         default=None, help=flag.help or text)
        else:
            counts = hints[flag.key] is int or int in get_args(hints[flag.key])
            text = help_text(field)
            if get_origin(hints[flag.key]) is Literal:
                text = f"{text} [{' | '.join(get_args(hints[flag.key]))}]"
            options = {"nargs": "+"} if flag.many == "+" else {"action": "append"} if flag.many == "append" else {}
            action = parser.add_argument(flag.option, dest=flag.key, default=None, help=flag.help or text,
                                         metavar=flag.metavar or ("N" if counts else "VALUE"), **options)
        old_spellings(parser, action, *flag.old)


def given_settings(args: argparse.Namespace, flags: Sequence[Flag]) -> Overrides:
    """Every setting the command line gave, ``key=value`` first, then the flags."""
    _take_settings_words(args)
    given, seen = [], set()
    for flag in flags:
        value = getattr(args, flag.key, None)
        if value is None or flag.key in seen:  # a key with two flags (--x, --no-x) holds one value
            continue
        seen.add(flag.key)
        if flag.negate != (value is False) and isinstance(value, bool):
            flag = next(f for f in flags if f.key == flag.key and f.negate == (value is False))
        if flag.text or flag.many or not isinstance(value, str):
            given.append(Override(flag.key, value, flag.option))
        else:
            given.append(parse_override(f"{flag.key}={value}", flag.option))
    return Overrides.parse(args.overrides or [], COMMAND_LINE) + Overrides(tuple(given))


def read_settings(cls: type, settings: Overrides, flags: Sequence[Flag], given: dict | None = None):
    """``cls`` from the command line's settings (and ``given`` values, e.g. positionals); a
    required setting nobody gave is named by its flag."""
    doc = settings.apply(given or {})
    by_key = {flag.key: flag for flag in flags}
    for f in fields(cls):
        if f.name not in doc and f.default is MISSING and f.default_factory is MISSING:
            raise UserError(by_key[f.name].option if f.name in by_key else f.name, "", "missing")
    return read_section(cls, doc, Source(COMMAND_LINE, settings))


def _take_settings_words(args: argparse.Namespace) -> None:
    """Moves the ``KEY=VALUE`` words a many-word positional swallowed to ``args.overrides``
    (a word naming an existing file stays a file)."""
    dest = getattr(args, "settings_words_in", None)
    if not dest:
        return
    words = list(getattr(args, dest) or [])
    moved = [w for w in words if _SETTING_WORD.match(w) and not Path(w).exists()]
    setattr(args, dest, [w for w in words if w not in moved])
    args.overrides = moved + list(args.overrides or [])
    args.settings_words_in = None  # done once, however often the settings are read


_SETTING_WORD = re.compile(r"[A-Za-z_][\w.]*=")
