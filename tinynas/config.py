"""Settings described once, read by one reader, changed on the command line one way.

A *section* is a frozen dataclass. A field's type says what a file may hold there (read by
type introspection, ``typing.get_type_hints``); its ``setting(...)`` metadata says the rest:
a range in ``bounds.py``'s interval syntax, a unit, the choices of a registry, a line of help.
Supported types: ``int``, ``float``, ``bool``, ``str``, ``Literal[...]`` choices, ``float | Auto``
(``auto`` or a number), tuples (``tuple[int, ...]``, ``tuple[float, float]``; a list in a file,
or comma-separated text), a nested section, and ``X | None``.

``read_section`` turns a mapping into a section or raises one ``UserError`` naming the file
and the dotted field: an unknown key (with the known ones), a wrong type, a value out of
range, a missing required field. A ``null`` stands for the field's default, so a merged or
overridden document can unset a value.

A section may list ``RENAMED_KEYS`` (old key -> new key): a file or ``key=value`` that still
uses an old spelling is read as the new one with a one-line note on stderr (``renamed.py``),
for one release; both spellings at once is an error.

``Overrides`` are ``key=value`` settings with dotted keys and YAML scalar values. They are
applied to the document before it is read, so a bad one is refused like a bad file; a
``Source`` remembers who set each field, so the error names the command line (or the flag)
rather than a file that never said it.
"""

from __future__ import annotations

import copy
import difflib
import functools
import re
import types
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any, Collection, Literal, Mapping, Sequence, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from .bounds import in_bounds, out_of_range
from .errors import UserError
from .fileio import check_nesting
from .renamed import current_key, note_renamed

AUTO = "auto"
Auto = Literal["auto"]
COMMAND_LINE = "command line"

Section = TypeVar("Section")
_METADATA_KEY = "tinynas.setting"
_NONE = type(None)
# YAML 1.1 (PyYAML) reads 1e-4 as text: it wants a dot before the exponent. A number field
# takes that spelling too, in a file and on the command line alike.
_EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


# ---------------------------------------------------------------------------- describing fields
@dataclass(frozen=True)
class Setting:
    """What a field's type cannot say about its values."""

    bounds: str | None = None  # an interval for a number, or for each number of a tuple
    unit: str = ""
    choices: Collection = ()  # for text whose choices live in a registry; fixed sets use Literal
    help: str = ""
    length: int | None = None  # the count of a ``tuple[X, ...]``, when fixed
    from_file: bool = True  # False: the program fills it in (where the section came from)


def setting(default: Any = MISSING, *, factory: Any = MISSING, bounds: str | None = None, unit: str = "",
            choices: Collection = (), help: str = "", length: int | None = None) -> Any:
    """A dataclass field with its ``Setting``; no default and no factory makes it required."""
    meta = Setting(bounds, unit, choices, help, length)
    return field(default=default, default_factory=factory, metadata={_METADATA_KEY: meta})


def internal(default: Any = MISSING, *, factory: Any = MISSING) -> Any:
    """A field the program fills in (a source path), never read from a file, not compared."""
    return field(default=default, default_factory=factory, compare=False,
                 metadata={_METADATA_KEY: Setting(from_file=False)})


def setting_of(f) -> Setting:
    return f.metadata.get(_METADATA_KEY) or Setting()


def help_text(f) -> str:
    """A line of help for field ``f``: its help, choices, unit and default (for a ``--flag``)."""
    spec = setting_of(f)
    text = spec.help + (f": {', '.join(map(str, spec.choices))}" if spec.choices else "")
    notes = [spec.unit] if spec.unit else []
    if f.default not in (MISSING, None, "", ()):
        shown = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in f.default) \
            if isinstance(f.default, tuple) else f.default
        notes.append(f"default {shown}")
    return text + (f" ({'; '.join(notes)})" if notes else "")


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def file_keys(cls: type) -> list[str]:
    """The keys a file may give for section ``cls``, in declaration order."""
    return [f.name for f in fields(cls) if f.init and setting_of(f).from_file]


def describe(hint: Any, spec: Setting = Setting()) -> str:
    """What a field of type ``hint`` accepts, in words: ``auto or a non-negative number``."""
    return _words(hint, spec, plural=False)


def _words(hint: Any, spec: Setting, plural: bool) -> str:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        # Choices first: "auto or a number" reads better than "a number or auto".
        options = sorted((a for a in args if a is not _NONE), key=lambda a: get_origin(a) is not Literal)
        return " or ".join(_words(a, spec, plural) for a in options)
    if origin is Literal:
        return _one_of(args)
    if origin is tuple:
        count = len(args) if args[-1] is not Ellipsis else spec.length
        return f"a list of {f'{count} ' if count else ''}{_words(args[0], spec, plural=True)}"
    if hint is bool:
        return "true or false"
    if hint is str:
        return _one_of(tuple(spec.choices)) if spec.choices else "text"
    if hint in (int, float):
        return _number_words(hint, spec.bounds, plural)
    if is_dataclass(hint):
        return "a mapping"
    raise TypeError(f"a setting of type {hint!r} is not supported")  # a bug in a section, not input


def _one_of(choices: Sequence) -> str:
    return str(choices[0]) if len(choices) == 1 else f"one of {', '.join(map(str, choices))}"


def _named_range(kind: type, bounds: str | None) -> str:
    """The adjective for a range with a common name ("non-negative"), or ""."""
    compact = "".join((bounds or "").split())
    if compact == "[0,inf)":
        return "non-negative"
    if kind is int and compact in ("[1,inf)", "(0,inf)"):
        return "positive"
    return ""


def _number_words(kind: type, bounds: str | None, plural: bool) -> str:
    adjective = _named_range(kind, bounds)
    noun = ("integer" if kind is int else "number") + ("s" if plural else "")
    text = f"{adjective} {noun}" if adjective else noun + (f" in {bounds}" if bounds else "")
    if plural:
        return text
    return f"{'an' if text[0] in 'aeiou' else 'a'} {text}"


# ---------------------------------------------------------------------------- where values came from
@dataclass(frozen=True)
class Override:
    """One ``key=value``: a dotted key, its value, and what set it (for errors)."""

    key: str
    value: object
    origin: str = COMMAND_LINE


def parse_override(text: str, origin: str = COMMAND_LINE) -> Override:
    """``"train.epochs=10"`` as an ``Override``; the value is a YAML scalar (``10`` is an int)."""
    if "=" not in text:
        raise UserError(origin, text, "expected key=value")
    key, value_text = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise UserError(origin, text, "expected a dotted key such as train.epochs before '='")
    try:
        value = check_nesting(yaml.safe_load(value_text), f"{origin}: {key}") if value_text != "" else ""
    except (yaml.YAMLError, RecursionError):
        raise UserError(origin, key, f"cannot read value {value_text[:80]!r}") from None
    return Override(key, value, origin)


@dataclass(frozen=True)
class Overrides:
    """``key=value`` settings, applied in order (a later one wins)."""

    items: tuple[Override, ...] = ()

    @classmethod
    def parse(cls, texts: Sequence[str], origin: str = COMMAND_LINE) -> "Overrides":
        return cls(tuple(parse_override(text, origin) for text in texts))

    def __add__(self, other: "Overrides") -> "Overrides":
        return Overrides(self.items + other.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def keys(self) -> list[str]:
        return [item.key for item in self.items]

    def origin(self, field_name: str) -> str | None:
        """What set ``field_name`` (or a section above it), or ``None`` when nothing did."""
        for item in reversed(self.items):
            key = current_key(item.key)
            if field_name in (item.key, key) or field_name.startswith((item.key + ".", key + ".")):
                return item.origin
        return None

    def apply(self, doc: Mapping, source: str = "") -> dict:
        """A copy of ``doc`` with every override set; missing sections are created."""
        if not isinstance(doc, Mapping):
            raise UserError(source, "", "expected a YAML mapping")
        doc = copy.deepcopy(dict(doc))
        for item in self.items:
            *parents, last = item.key.split(".")
            node = doc
            for part in parents:
                child = node.get(part)
                if child is None:
                    child = node[part] = {}
                if not isinstance(child, dict):
                    raise UserError(item.origin, item.key, f"{part} is not a section")
                node = child
            node[last] = copy.deepcopy(item.value)
        return doc


def apply_overrides(doc: Mapping, overrides: Sequence[str], source: str = COMMAND_LINE) -> dict:
    """``["train.epochs=10", "data.size=320"]`` applied to a copy of ``doc``."""
    return Overrides.parse(overrides, source).apply(doc)


@dataclass(frozen=True)
class Source:
    """Where a document's fields were set: its file, unless an override set them."""

    file: str
    overrides: Overrides = Overrides()

    def of(self, field_name: str) -> str:
        return self.overrides.origin(field_name) or self.file

    def error(self, field_name: str, reason: str) -> UserError:
        return UserError(self.of(field_name), field_name, reason)


def as_source(source: str | Source) -> Source:
    return source if isinstance(source, Source) else Source(source)


# ---------------------------------------------------------------------------- unknown keys
def nearest_key(key: object, known: Sequence[str]) -> str | None:
    """The known key ``key`` most likely misspells, or ``None`` when none is close.

    A key is compared whole and with each of its ``_`` parts, so ``lrr`` finds ``lr_per_64``
    and ``warmup`` finds ``warmup_epochs`` (whole-key likeness breaks ties; then the order).
    """
    word = str(key).lower()

    def likeness(candidate: str) -> tuple[float, float]:
        whole = difflib.SequenceMatcher(None, word, candidate.lower()).ratio()
        parts = [difflib.SequenceMatcher(None, word, part).ratio()
                 for part in candidate.lower().split("_") if len(part) >= 2]
        return max([whole, *parts]), whole

    ranked = sorted(known, key=likeness, reverse=True)
    return ranked[0] if ranked and likeness(ranked[0])[0] >= 0.7 else None


def unknown_key(noun: str, key: object, known: Sequence[str]) -> str:
    """``unknown option (did you mean lr_per_64? known: ...)``: the reason for an unknown key."""
    guess = nearest_key(key, known)
    hint = f"did you mean {guess}? " if guess is not None else ""
    return f"unknown {noun} ({hint}known: {', '.join(map(str, known))})"


# ---------------------------------------------------------------------------- reading
class _Refused(Exception):
    """A value that does not fit; ``expected`` says what would (``None``: the field's description)."""

    def __init__(self, expected: str | None = None):
        super().__init__(expected)
        self.expected = expected


class _OutOfRange(_Refused):
    """A number of the right type outside a range that has no common name."""

    def __init__(self, value: int | float):
        super().__init__()
        self.value = value


def read_section(cls: type[Section], raw: object, source: str | Source, where: str = "", *,
                 extra: Mapping[str, object] | None = None, read_elsewhere: Sequence[str] = ()) -> Section:
    """Section ``cls`` from mapping ``raw`` (``None``: all defaults), read at dotted path ``where``.

    ``extra`` gives values the caller read itself (an architecture, budgets): a file may hold
    those keys, and they are passed to ``cls`` as they are. ``read_elsewhere`` names keys of
    ``raw`` that belong to another reader (a space's block limits) and are not part of ``cls``.
    """
    src = as_source(source)
    extra = extra or {}
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise src.error(where, "expected a mapping")
    raw = _renamed_keys(cls, raw, src, where)
    known = file_keys(cls) + [key for key in read_elsewhere if key not in extra]
    for key in raw:
        if key not in known:
            raise src.error(_dotted(where, key), unknown_key("option" if where else "key", key, known))
    hints = _hints(cls)
    values = {}
    for f in fields(cls):
        if f.name in extra:
            values[f.name] = extra[f.name]
            continue
        if not f.init or not setting_of(f).from_file:
            continue
        value = raw.get(f.name)
        name = _dotted(where, f.name)
        if value is None:
            if f.default is MISSING and f.default_factory is MISSING:
                raise src.error(name, "missing")
            continue
        values[f.name] = read_value(value, hints[f.name], setting_of(f), src, name)
    return cls(**values)


def _renamed_keys(cls: type, raw: Mapping, src: Source, where: str) -> Mapping:
    """``raw`` with the old spellings of ``cls.RENAMED_KEYS`` moved to their new keys (an
    override that set an old key still answers ``Overrides.origin`` of the new one)."""
    renamed = getattr(cls, "RENAMED_KEYS", {})
    used = [old for old in renamed if old in raw]
    if not used:
        return raw
    raw = dict(raw)
    for old in used:
        new = renamed[old]
        if new in raw:
            raise src.error(_dotted(where, old), f"{old} is the old spelling of {new}; give only {new}")
        raw[new] = raw.pop(old)
        note_renamed(src.overrides.origin(_dotted(where, old)) or src.file or "settings", _dotted(where, old),
                     _dotted(where, new))
    return raw


def read_value(value: object, hint: Any, spec: Setting, source: str | Source, name: str) -> Any:
    """One field's value as type ``hint``, or a ``UserError`` naming ``name``."""
    src = as_source(source)
    section = _section_type(hint)
    if section is not None:
        return read_section(section, value, src, name)
    try:
        return _convert(value, hint, spec)
    except _OutOfRange as refused:
        raise src.error(name, out_of_range(refused.value, spec.bounds)) from None
    except _Refused as refused:
        raise src.error(name, f"expected {refused.expected or describe(hint, spec)}, got {_short(value)}") from None


def _section_type(hint: Any) -> type | None:
    if get_origin(hint) in (Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not _NONE]
        hint = options[0] if len(options) == 1 else None
    return hint if isinstance(hint, type) and is_dataclass(hint) else None


def _convert(value: object, hint: Any, spec: Setting) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return _convert_union(value, args, spec)
    if origin is Literal:
        if isinstance(value, bool) or value not in args:
            raise _Refused()
        return value
    if origin is tuple:
        return _convert_tuple(value, args, spec)
    if hint is bool:
        if not isinstance(value, bool):
            raise _Refused()
        return value
    if hint in (int, float):
        return _convert_number(value, hint, spec.bounds)
    if hint is str:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise _Refused("text")
        text = value if isinstance(value, str) else str(value)  # YAML reads `name: 2024` as a number
        if spec.choices and text not in spec.choices:
            raise _Refused()
        return text
    raise TypeError(f"a setting of type {hint!r} is not supported")


def _convert_union(value: object, args: tuple, spec: Setting) -> Any:
    out_of_range = None
    # Choices first, so "auto" is not offered to a text alternative.
    for option in sorted(args, key=lambda a: get_origin(a) is not Literal):
        if option is _NONE:
            continue
        try:
            return _convert(value, option, spec)
        except _OutOfRange as refused:
            out_of_range = refused
        except _Refused:
            pass
    raise out_of_range or _Refused()


def _convert_number(value: object, kind: type, bounds: str | None) -> int | float:
    if kind is float and isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value.strip()):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, int if kind is int else (int, float)):
        raise _Refused()
    if kind is float:
        try:
            value = float(value)
        except OverflowError:
            raise _Refused() from None
        if value != value or value in (float("inf"), float("-inf")):
            raise _Refused()
    if bounds and not in_bounds(value, bounds):
        # A range with a common name is worded with the type ("a non-negative number").
        raise _Refused() if _named_range(kind, bounds) else _OutOfRange(value)
    return value


def _convert_tuple(value: object, args: tuple, spec: Setting) -> tuple:
    if isinstance(value, str):
        value = _split_text(value)
    variable = args[-1] is Ellipsis
    if variable and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]  # one number (``objects=3``, YAML's scalar) is a list of one
    if not isinstance(value, (list, tuple)) or not value:
        raise _Refused()
    count = spec.length if variable else len(args)
    if count is not None and len(value) != count:
        raise _Refused()
    kinds = [args[0]] * len(value) if variable else list(args)
    try:
        return tuple(_convert(item, kind, spec) for item, kind in zip(value, kinds))
    except _Refused:
        raise _Refused() from None  # worded for the whole list


def _split_text(text: str) -> list:
    """``"0,0,1,1,6"`` (a tuple on the command line) as YAML scalars."""
    try:
        return [yaml.safe_load(part) for part in text.split(",")]
    except yaml.YAMLError:
        raise _Refused() from None


def _dotted(where: str, key: object) -> str:
    return f"{where}.{key}" if where else str(key)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 100 else text[:97] + "..."
