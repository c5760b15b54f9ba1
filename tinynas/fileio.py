"""Reading user files, with every failure turned into a one-line ``UserError``.

``read_text`` names a missing or unreadable file; ``parse_yaml`` and ``parse_json`` name the
line of a syntax error. Parsing is safe: ``yaml.safe_load`` and ``json.loads`` only build data.
"""

from __future__ import annotations

import json
import os
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


def parse_yaml(text: str, source: str) -> object:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "yaml"
        raise UserError(source, where, f"malformed YAML: {getattr(err, 'problem', None) or err}") from None


def parse_json(text: str, source: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(source, f"line {err.lineno}", f"malformed JSON: {err.msg}") from None


def read_yaml(path: str | os.PathLike, what: str = "file") -> object:
    return parse_yaml(read_text(path, what), str(path))


def read_json(path: str | os.PathLike, what: str = "file") -> object:
    return parse_json(read_text(path, what), str(path))
