"""Reading and writing architecture files: YAML, JSON and TinyNAS/DAMO-YOLO structure text.

The structure text is a Python literal (a list of dicts); it is parsed with
``ast.literal_eval`` and never executed.
"""

from __future__ import annotations

import ast
import json
import os
import pprint
from pathlib import Path

import yaml

from .arch import Arch, arch_from_dicts
from .atomic import atomic_write_text
from .fileio import check_nesting, parse_json, parse_yaml, read_text
from .errors import UserError

TEXT_SUFFIXES = (".txt", ".py", ".structure")
YAML_SUFFIXES = (".yaml", ".yml")


def _unwrap(data: object, source: str) -> object:
    """Accept a bare list of blocks, or a mapping with ``blocks`` (plus an optional name/meta)."""
    if isinstance(data, dict):
        unknown = set(data) - {"blocks", "name", "meta", "resolution"}
        if unknown:
            raise UserError(source, sorted(unknown)[0], "unknown top-level key (expected blocks, name, meta, resolution)")
        if "blocks" not in data:
            raise UserError(source, "blocks", "missing")
        return data["blocks"]
    return data


def parse_structure_text(text: str, source: str = "<text>") -> Arch:
    """Parse TinyNAS/DAMO-YOLO structure text (a Python-literal list of block dicts)."""
    try:
        data = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError) as err:
        line = getattr(err, "lineno", None)
        where = f"line {line}" if line else "structure"
        raise UserError(source, where, f"not a Python literal list of blocks ({err.__class__.__name__})") from None
    return arch_from_dicts(_unwrap(check_nesting(data, source), source), source)


def parse_arch(text: str, fmt: str, source: str = "<text>") -> Arch:
    """Parse ``text`` in format ``yaml``, ``json`` or ``text``."""
    if fmt == "text":
        return parse_structure_text(text, source)
    if fmt == "json":
        data = parse_json(text, source)
    elif fmt == "yaml":
        data = parse_yaml(text, source)
    else:
        raise ValueError(f"unknown architecture format {fmt!r}")
    return arch_from_dicts(_unwrap(data, source), source)


def format_of(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in YAML_SUFFIXES:
        return "yaml"
    if suffix == ".json":
        return "json"
    if suffix in TEXT_SUFFIXES:
        return "text"
    raise UserError(str(path), "suffix", f"unknown architecture format {suffix!r} (use .yaml, .json or .txt)")


def load_arch(path: str | os.PathLike) -> Arch:
    """Read an architecture file; the suffix picks the format."""
    fmt = format_of(path)
    return parse_arch(read_text(path), fmt, str(path))


def format_structure_text(arch: Arch, family: str = "damoyolo") -> str:
    """The structure-text form DAMO-YOLO (``family="damoyolo"``) or TinyNAS reads."""
    if family not in ("damoyolo", "tinynas"):
        raise ValueError(f"unknown family {family!r}")
    return pprint.pformat(arch.to_dicts(family), indent=2, width=100, sort_dicts=False) + "\n"


def dump_arch(arch: Arch, fmt: str, family: str = "tinynas", meta: dict | None = None) -> str:
    if fmt == "text":
        return format_structure_text(arch, family)
    doc: dict = {"blocks": arch.to_dicts(family)}
    if meta:
        doc["meta"] = meta
    if fmt == "json":
        return json.dumps(doc, indent=2) + "\n"
    if fmt == "yaml":
        # One flow-style mapping per block keeps a file readable as a table.
        lines = ["blocks:"]
        for block in doc["blocks"]:
            lines.append("  - " + yaml.safe_dump(block, default_flow_style=True, sort_keys=False, width=1000).strip())
        if meta:
            lines.append(yaml.safe_dump({"meta": meta}, sort_keys=False).rstrip())
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown architecture format {fmt!r}")


def save_arch(arch: Arch, path: str | os.PathLike, family: str | None = None, meta: dict | None = None) -> None:
    """Write ``arch``; the suffix picks the format (structure text defaults to DAMO-YOLO names)."""
    fmt = format_of(path)
    family = family or ("damoyolo" if fmt == "text" else "tinynas")
    atomic_write_text(path, dump_arch(arch, fmt, family, meta))
