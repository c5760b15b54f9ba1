"""Checkpoints: the whole search state as JSON, written atomically.

JSON rather than pickle because a run folder may come from someone else, and loading a
pickle runs code. The set of already-seen candidates is not stored here: it is rebuilt from
``candidates.csv``, the run's append-only log, cut back to the length the checkpoint
recorded (rows written after the last checkpoint are regenerated identically on resume).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import atomic_write_text
from ..errors import UserError
from ..fileio import read_json
from .strategy import COUNTERS

CHECKPOINT_NAME = "checkpoint.json"
FORMAT = "tinynas-search-checkpoint/1"


def save_checkpoint(run_dir: Path, state: dict) -> None:
    doc = {"format": FORMAT, **state}
    atomic_write_text(Path(run_dir) / CHECKPOINT_NAME, json.dumps(doc, separators=(",", ":")) + "\n")


def load_checkpoint(run_dir: str | Path) -> dict:
    path = Path(run_dir) / CHECKPOINT_NAME
    source = str(path)
    if not Path(run_dir).is_dir():
        raise UserError(str(run_dir), "--resume", "no such run folder")
    if not path.is_file():
        raise UserError(source, "", "no checkpoint here: the run never reached its first checkpoint; "
                        "it holds nothing to keep: start it again without --resume, with this folder as --out")
    doc = read_json(path, "search checkpoint")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UserError(source, "format", f"not a tinynas search checkpoint (expected {FORMAT})")
    for key, kind in (("config", dict), ("rng_state", list), ("counters", dict), ("populations", list),
                      ("csv", dict)):
        if key not in doc:
            raise UserError(source, key, "missing")
        if not isinstance(doc[key], kind):
            raise UserError(source, key, f"expected a JSON {'object' if kind is dict else 'array'}")
    for key in COUNTERS:
        value = doc["counters"].get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UserError(source, f"counters.{key}", f"expected a non-negative integer, got {value!r}")
    size = doc["csv"].get("bytes")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise UserError(source, "csv.bytes", f"expected a non-negative integer, got {size!r}")
    return doc
