"""``--budget latency=match:PATH``: the budget is another model's measured latency.

"Beat my current model on this chip": the ONNX file at PATH is timed in the design's runtime
with its table's settings (the same harness that times peers side by side), and its median
becomes the latency budget. Beside it, in the same rounds, the model recipe's own detector is
timed as an anchor: its predicted / measured ratio is the table's scale (``table_scale``),
which the search's ladder is converted with, so a table measured on another day or machine
still searches at today's latency of the matched file. The figure is kept in ``match.json`` in the design folder with the
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
    db = spec.latency_db or DEFAULT_TABLES.get(spec.runtime, "")
    if not db:
        raise UserError("--latency-db", "", f"no table is shipped for runtime {spec.runtime!r}: build one "
                        "(tinynas latency build --runtime ...) and pass it with --latency-db")
    model = read_onnx_image_model(target, spec.size, "--budget")
    key = _settings_key(spec, db)
    stored = _stored(out)
    if stored and stored.get("sha256") == model.sha256 and stored.get("settings") == key:
        log(f"budget: {target} measured {stored['measured_ms']:.3f} ms earlier in {spec.runtime}")
        record = stored
    else:
        record = _time_with_anchor(spec, db, target, model.sha256, key, log)
    return replace(spec, budget=f"latency={record['measured_ms']:.4f}ms", table_scale=record["table_scale"]), record


def _time_with_anchor(spec: DesignSpec, db: str, target: Path, sha256: str, key: dict,
                      log: Callable[[str], None]) -> dict:
    """Time ``target`` beside the anchor; the anchor's predicted / measured ms is the table's scale.

    The budget is judged in ms measured here today, but the search prices candidates from a
    table measured on another day, or another machine of the same kind, which can be off by
    tens of per cent as a whole: the anchor converts one into the other.
    """
    import tempfile

    from ..deploy.onnx_export import export_onnx
    from ..detect.detector import Detector
    from ..latency.side_by_side import time_side_by_side
    from .search_stage import latency_model
    from .spec import dataset_classes, read_data_section

    num_classes = len(dataset_classes(read_data_section(spec.data)))
    pricing = latency_model(replace(spec, latency_db=db), num_classes)
    try:
        predicted = pricing.predict_detector_ms(pricing.recipe.backbone.arch, spec.size)
    except UserError as err:  # a table that cannot price the recipe's own backbone: no anchor
        log(f"budget: no anchor ({err.reason}); the table's ms are taken as measured here")
        predicted = None
    with tempfile.TemporaryDirectory(prefix="tinynas-match-") as folder:
        paths, names = [target], ["match"]
        if predicted is not None:
            paths.append(Path(folder) / "anchor.onnx")
            export_onnx(Detector(pricing.recipe).eval(), paths[-1], size=spec.size)
            names.append("anchor")
        timing = time_side_by_side(paths, spec.size, db=db, runtime=spec.runtime, rounds=ROUNDS, runs=RUNS,
                                   names=names)
    measured = timing.by_name("match")
    record = {"file": str(target.resolve()), "sha256": sha256, "settings": key,
              "measured_ms": measured.median_ms, "q25_ms": measured.q25_ms, "q75_ms": measured.q75_ms,
              "round_medians_ms": list(measured.round_medians_ms), "timing": timing.settings, "table_scale": 1.0}
    log(f"budget: {target} measures {measured.median_ms:.3f} ms in {spec.runtime} "
        f"({timing.settings['threads']} thread(s), IQR {measured.q25_ms:.3f}-{measured.q75_ms:.3f})")
    if predicted is not None:
        anchor = timing.by_name("anchor")
        record.update(anchor={"model": spec.model, "predicted_ms": predicted, "measured_ms": anchor.median_ms},
                      table_scale=predicted / anchor.median_ms)
        log(f"budget: anchor {spec.model} measures {anchor.median_ms:.3f} ms, the table predicts {predicted:.3f} ms: "
            f"the search prices at {record['table_scale']:.3f} table ms per ms measured")
    return record


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
