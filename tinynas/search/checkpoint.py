"""Checkpoints: the whole search state as JSON, written atomically.

JSON rather than pickle because a run folder may come from someone else, and loading a
pickle runs code. The set of already-seen candidates is not stored here: it is rebuilt from
``candidates.csv``, the run's append-only log, cut back to the length the checkpoint
recorded (rows written after the last checkpoint are regenerated identically on resume).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from ..atomic import atomic_write_text
from ..errors import UserError

CHECKPOINT_NAME = "checkpoint.json"
FORMAT = "tinynas-search-checkpoint/1"


def rng_state_to_json(rng: random.Random) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def rng_from_json(state: list, source: str) -> random.Random:
    try:
        version, internal, gauss = state
        rng = random.Random()
        rng.setstate((int(version), tuple(int(v) for v in internal), gauss))
    except (TypeError, ValueError) as err:
        raise UserError(source, "rng_state", f"not a valid random state ({err})") from None
    return rng


def save_checkpoint(run_dir: Path, state: dict) -> None:
    doc = {"format": FORMAT, **state}
    atomic_write_text(Path(run_dir) / CHECKPOINT_NAME, json.dumps(doc, separators=(",", ":")) + "\n")


def load_checkpoint(run_dir: str | Path) -> dict:
    path = Path(run_dir) / CHECKPOINT_NAME
    source = str(path)
    if not Path(run_dir).is_dir():
        raise UserError(str(run_dir), "--resume", "no such run folder")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(source, "", "no checkpoint here: the run never reached its first checkpoint "
                        "(start it again without --resume)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(source, "", f"cannot read: {err}") from None
    except json.JSONDecodeError as err:
        raise UserError(source, f"line {err.lineno}", f"corrupt checkpoint: {err.msg}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UserError(source, "format", f"not a tinynas search checkpoint (expected {FORMAT})")
    for key in ("config", "rng_state", "counters", "populations", "csv"):
        if key not in doc:
            raise UserError(source, key, "missing")
    return doc
