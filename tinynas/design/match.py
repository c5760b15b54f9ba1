"""``--budget latency=match:PATH``: the budget is another model's measured latency.

"Beat my current model on this chip": the ONNX file at PATH is timed in the design's runtime
with its table's settings (the same harness that times peers side by side), and its median
becomes the latency budget. The figure is kept in ``match.json`` in the design folder with the
file's sha256, so a rerun resumes with the same budget instead of a re-timed, slightly
different one (which the stored settings would refuse); a changed file is timed again and
then refused by the stored settings, as any other change of budget is.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Callable

from ..atomic import atomic_write_text
from ..errors import UserError
from ..latency.onnx_file import read_onnx_image_model
from .spec import DEFAULT_TABLES, DesignSpec

MATCH_PREFIX = "match:"
MATCH_NAME = "match.json"
ROUNDS, RUNS = 5, 20  # 100 timed runs: the budget is one number everything after it is judged by


def match_target(budget: str) -> Path | None:
    """The ONNX file a ``latency=match:PATH`` budget names; None for any other budget."""
    kind, _, value = str(budget).partition("=")
    value = value.strip()
    if kind.strip().lower() != "latency" or not value.lower().startswith(MATCH_PREFIX):
        return None
    path = value[len(MATCH_PREFIX):].strip()
    if not path:
        raise UserError("--budget", "", "latency=match: needs the path of an ONNX file, e.g. latency=match:yolo26n.onnx")
    return Path(path)


def _settings_key(spec: DesignSpec, db: str) -> dict:
    return {"runtime": spec.runtime, "db": db, "size": spec.size}


def matched_latency(spec: DesignSpec, out: Path, log: Callable[[str], None] = print) -> tuple[DesignSpec, dict]:
    """``spec`` with its match budget replaced by the file's measured latency, and the record.

    Nothing is written here: the caller stores the record (``store_match``) once it holds the
    design folder.
    """
    target = match_target(spec.budget)
    if target is None:
        raise ValueError("not a match budget")
    db = spec.db or DEFAULT_TABLES.get(spec.runtime, "")
    if not db:
        raise UserError("--db", "", f"no table is shipped for runtime {spec.runtime!r}: build one "
                        "(tinynas latency build --runtime ...) and pass it with --db")
    model = read_onnx_image_model(target, spec.size, "--budget")
    key = _settings_key(spec, db)
    stored = _stored(out)
    if stored and stored.get("sha256") == model.sha256 and stored.get("settings") == key:
        log(f"budget: {target} measured {stored['measured_ms']:.3f} ms earlier in {spec.runtime}")
        record = stored
    else:
        from ..latency.side_by_side import time_side_by_side

        timing = time_side_by_side([target], spec.size, db=db, runtime=spec.runtime, rounds=ROUNDS,
                                   runs=RUNS, names=["match"])
        measured = timing.models[0]
        record = {"file": str(target.resolve()), "sha256": model.sha256, "settings": key,
                  "measured_ms": measured.median_ms, "q25_ms": measured.q25_ms, "q75_ms": measured.q75_ms,
                  "round_medians_ms": list(measured.round_medians_ms), "timing": timing.settings}
        log(f"budget: {target} measures {measured.median_ms:.3f} ms in {spec.runtime} "
            f"({timing.settings['threads']} thread(s), IQR {measured.q25_ms:.3f}-{measured.q75_ms:.3f})")
    return replace(spec, budget=f"latency={record['measured_ms']:.4f}ms"), record


def store_match(out: Path, record: dict) -> None:
    atomic_write_text(out / MATCH_NAME, json.dumps(record, indent=2) + "\n")


def _stored(out: Path) -> dict | None:
    path = Path(out) / MATCH_NAME
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None  # unreadable: time the file again and write a new one
    return doc if isinstance(doc, dict) and isinstance(doc.get("measured_ms"), (int, float)) else None
