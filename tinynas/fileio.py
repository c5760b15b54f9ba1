"""Reading user files, with every failure turned into a one-line ``UserError``.

``read_text`` names a missing or unreadable file; ``parse_yaml`` and ``parse_json`` name the
line of a syntax error. Parsing is safe: ``yaml.safe_load`` and ``json.loads`` only build data.
"""

from __future__ import annotations

import json
import math
import os
from itertools import repeat
from pathlib import Path

import yaml

from .errors import UserError


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    source = str(path)
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(source, "", f"{what} not found") from None
    except IsADirectoryError:
        raise UserError(source, "", f"expected a {what}, got a folder") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(source, "", f"cannot read {what} ({err.__class__.__name__})") from None


# Every file format here is a few levels deep; anything deeper is hostile or broken, and
# would otherwise reach Python's recursion limit in the parser or in code that walks it.
MAX_NESTING = 32
_CONTAINERS = (dict, list, tuple)


def parse_yaml(text: str, source: str) -> object:
    try:
        return check_nesting(yaml.safe_load(text), source)
    except RecursionError:
        raise UserError(source, "yaml", _too_deep()) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "yaml"
        raise UserError(source, where, f"malformed YAML: {getattr(err, 'problem', None) or err}") from None


def parse_json(text: str, source: str) -> object:
    try:
        return check_nesting(json.loads(text), source)
    except RecursionError:
        raise UserError(source, "json", _too_deep()) from None
    except json.JSONDecodeError as err:
        raise UserError(source, f"line {err.lineno}", f"malformed JSON: {err.msg}") from None


def read_yaml(path: str | os.PathLike, what: str = "file") -> object:
    return parse_yaml(read_text(path, what), str(path))


def read_json(path: str | os.PathLike, what: str = "file") -> object:
    return parse_json(read_text(path, what), str(path))


def _too_deep() -> str:
    return f"nested more than {MAX_NESTING} levels deep"


def check_nesting(data: object, source: str) -> object:
    """``data`` itself, once checked to nest at most ``MAX_NESTING`` levels (iteratively).

    Level by level, and only containers are carried down: a COCO file's millions of numbers
    are each looked at once, by ``isinstance`` mapped in C, not pushed on a stack.
    """
    level = [data] if isinstance(data, _CONTAINERS) else []
    depth = 0
    while level:
        if depth >= MAX_NESTING:
            raise UserError(source, "", _too_deep())
        deeper = []
        for node in level:
            values = node.values() if isinstance(node, dict) else node
            if any(map(isinstance, values, repeat(_CONTAINERS))):
                deeper += [value for value in values if isinstance(value, _CONTAINERS)]
        level = deeper
        depth += 1
    return data


def strict_json_value(value: object) -> object:
    """``value`` with every NaN or infinite float replaced by ``None``: JSON has no such
    numbers, and strict readers (browsers, jq, most languages) refuse Python's ``NaN``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json_value(item) for item in value]
    return value


def json_text(value: object, **options) -> str:
    """``json.dumps`` that writes strict JSON: non-finite floats become ``null`` (see
    ``strict_json_value``), and anything else that is not JSON is a ``ValueError``/``TypeError``
    (a bug), never ``NaN`` or ``Infinity`` in a file the project writes."""
    return json.dumps(strict_json_value(value), allow_nan=False, **options)
