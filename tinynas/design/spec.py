"""What a design run is asked to do, checked once and stored in its folder.

A design folder is resumed by running the same command again; the settings it started with
are kept in ``design.json`` so that a rerun with other settings is refused instead of mixing
two designs in one folder.
"""

from __future__ import annotations

import json
import math
from dataclasses import InitVar, asdict, dataclass, fields
from functools import cached_property
from pathlib import Path

from ..atomic import atomic_write_text
from ..config import AUTO, Auto, internal, read_section, setting
from ..errors import UserError
from ..fileio import read_yaml
from ..renamed import note_renamed
from ..resources import resolve_space_path
from ..search.budgets import Budget, parse_budget
from ..search.settings import AT_LEAST_ONE

SPEC_NAME = "design.json"
# The shipped table each runtime is priced with when no --latency-db is given (built on this project's
# reference CPU; a table of your own chip is better, see README "Latency database").
# cpu-ort-fp32-tinynas-n holds every detector a k1kx search builds inside tinynas-n or tinynas-p at 320.
DEFAULT_TABLES = {"onnxruntime": "cpu-ort-fp32-tinynas-n", "torch": "cpu-fp32", "openvino": "cpu-ov-fp32",
                  "tensorrt": "v100-trt-fp16"}
DATA_KEYS = ("train_images", "train_annotations", "val_images", "val_annotations")


@dataclass(frozen=True)
class DesignSpec:
    data: str = setting(help="YAML with the four dataset paths (train_images, train_annotations, val_images, "
                             "val_annotations; a train recipe's data section works too)")
    budget: str = setting(help="the deployed detector's latency, e.g. latency=8ms, or latency=match:FILE.onnx: "
                               "that file's latency measured here")
    runtime: str = setting("onnxruntime", help="runtime the model deploys in: onnxruntime, openvino, tensorrt or "
                                               "torch; the latency table must be of it")
    latency_db: str = setting("", help="latency table (a file or a shipped name); empty: the shipped table of the "
                                       "runtime")
    model: str = setting("tinynas-n", help="model recipe giving the wrap, neck and head")
    space: str = setting("k1kx", help="search space")
    teacher_factors: tuple[float, ...] = setting((2.0, 4.0), help="teacher rungs at these multiples of the budget")
    budgets: tuple[str, ...] = setting((), help="a fixed budget of the backbone besides the latency, e.g. layers=25 "
                                                "(repeatable)")
    candidates: int = setting(20000, bounds=AT_LEAST_ONE, help="search candidates")
    seed: int = setting(0, help="seed of the search and the trainings")
    epochs: int = setting(100, bounds=AT_LEAST_ONE, help="training epochs of every model")
    size: int = setting(320, bounds=AT_LEAST_ONE, unit="pixels", help="input size")
    batch_size: int = setting(16, bounds=AT_LEAST_ONE, help="training batch")
    baselines: bool | Auto = setting(AUTO, help="also train each distilled model without its teacher, the better "
                                                "of the two deployable: true, false, or auto (only where the "
                                                "teacher's worth to it fell short, so the gain is uncertain)")
    timed_runs: int = setting(30, bounds=AT_LEAST_ONE, help="timed runs per exported model")
    # The table's ms per ms measured here today (1: the table is taken as it is). A match budget
    # sets it from an anchor, the model recipe's own detector, timed beside the matched file.
    table_scale: float = internal(1.0)
    init: tuple[str, ...] = setting((), help="fine-tune: each model starts from the checkpoint of its own "
                                             "architecture (classes aside) among these files, or the best.pt files "
                                             "under these folders (e.g. an earlier design on other data); a model "
                                             "with none starts from scratch, said in the log")
    db: InitVar[str | None] = None  # latency_db's old name, accepted for one release

    def __post_init__(self, db: str | None) -> None:
        if db is not None:
            if self.latency_db:
                raise TypeError("DesignSpec() got both db= (its old name) and latency_db=")
            note_renamed("DesignSpec()", "db=", "latency_db=")
            object.__setattr__(self, "latency_db", db)

    def latency_budget(self) -> Budget:
        """The budget as a value, parsed once however many stages ask for it."""
        return self._budget

    @cached_property
    def _budget(self) -> Budget:
        return parse_budget(self.budget, "--budget", "--budget")

    def rung_limits_ms(self) -> tuple[float, ...]:
        """The budget first, then each teacher's limit, ascending."""
        base = self.latency_budget().limit
        return tuple(sorted({base, *(base * f for f in self.teacher_factors)}))

    def search_ladder(self) -> tuple[Budget, ...]:
        """The ladder in the table's ms, which the search prices candidates in, as values."""
        return tuple(Budget("latency", limit * self.table_scale) for limit in self.rung_limits_ms())

    def to_json(self) -> dict:
        return asdict(self)


def check_spec(spec: DesignSpec) -> DesignSpec:
    """Every setting in range, the files there; returns the spec with resolved paths."""
    budget = spec.latency_budget()
    if budget.kind != "latency":
        raise UserError("--budget", "", f"a design budgets the deployed detector's latency "
                        f"(e.g. latency=8ms), got {spec.budget!r}")
    for text in spec.budgets:
        if parse_budget(text, "--backbone-budget", "--backbone-budget").kind == "latency":
            raise UserError("--backbone-budget", "", "the latency budget is --budget; give other kinds here")
    if not spec.teacher_factors or any(not math.isfinite(f) or f <= 1.0 for f in spec.teacher_factors):
        raise UserError("--teacher-factors", "", f"expected factors above 1 (e.g. 2,4), got "
                        f"{list(spec.teacher_factors)}")
    # The counts are checked by the one settings reader (ranges from the fields above).
    counted = ("data", "budget", "candidates", "epochs", "size", "batch_size", "timed_runs")
    read_section(DesignSpec, {name: getattr(spec, name) for name in counted}, "design settings")
    from ..detect.model_recipe import check_input_size, load_model_recipe

    check_input_size(load_model_recipe(spec.model), spec.size, "--size")
    from ..latency.runtimes import RUNTIMES

    runtime = spec.runtime.strip().lower()
    RUNTIMES.lookup(runtime)
    db = spec.latency_db or DEFAULT_TABLES.get(runtime, "")
    if not db:
        raise UserError("--latency-db", "", f"no table is shipped for runtime {runtime!r}: build one "
                        "(tinynas latency build --runtime ...) and pass it with --latency-db")
    resolve_space_path(spec.space)
    from ..latency.table import load_table, sidecar_path

    table = load_table(db)
    built_in = str(table.meta.get("runtime", "torch")).lower()
    if built_in != runtime:
        raise UserError(str(sidecar_path(table.path)), "runtime",
                        f"the table was measured in {built_in}, the design deploys in {runtime}: "
                        "give a table built with --runtime " + runtime)
    check_runtime(runtime, table.meta, str(sidecar_path(table.path)))
    from .init_match import gather_checkpoints

    gather_checkpoints(spec.init)  # readable and not fused, before the search
    init = tuple(str(Path(p).resolve()) for p in spec.init)
    return DesignSpec(**{**asdict(spec), "data": str(Path(spec.data)), "latency_db": db, "runtime": runtime,
                         "init": init})


def check_runtime(runtime: str, meta: dict, sidecar: str) -> None:
    """The measure stage can time the exported models here: the runtime is installed, it has
    the table's device (the TensorRT or CUDA provider, OpenVINO's device), CUDA is there for a
    CUDA table; checked before the search and the trainings, not after them."""
    from ..latency.runtimes import load_runtime

    device, dtype = str(meta.get("device", "cpu")), str(meta.get("dtype", "fp32"))
    try:
        load_runtime(runtime, device, dtype, int(meta.get("threads") or 1))
    except UserError as err:
        raise UserError("--runtime", runtime, f"the designed models cannot be timed here: {err.reason} "
                        f"(the table {sidecar} was measured on {device} {dtype})") from None
    if runtime == "torch" and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(sidecar, "device", f"the table was measured on {device}, and CUDA is not "
                            "available on this machine to time the models")


def read_data_section(path: str | Path) -> dict:
    """The dataset of a design: the four paths (and optional data settings), made absolute."""
    path = Path(path)
    doc = read_yaml(path, "data file")
    if isinstance(doc, dict) and isinstance(doc.get("data"), dict):
        doc = doc["data"]  # a train recipe's data section works too
    if not isinstance(doc, dict):
        raise UserError(str(path), "", "expected a mapping with train_images, train_annotations, "
                        "val_images and val_annotations")
    for key in DATA_KEYS:
        value = doc.get(key)
        if not isinstance(value, str) or not value:
            raise UserError(str(path), key, "missing (a folder or file path)")
        resolved = Path(value) if Path(value).is_absolute() else path.parent / value
        if not resolved.exists():
            raise UserError(str(path), key, f"{resolved} does not exist")
        doc = {**doc, key: str(resolved.resolve())}
    return doc


def dataset_classes(data: dict) -> list[str]:
    """The training set's class names in category-id order (the order the detector learns)."""
    from ..data.coco import read_coco_json

    path = data["train_annotations"]
    categories = read_coco_json(path).get("categories")
    if not isinstance(categories, list) or not categories:
        raise UserError(path, "categories", "expected a non-empty list of categories")
    try:
        ordered = sorted(categories, key=lambda c: c["id"])
        return [str(c.get("name", c["id"])) for c in ordered]
    except (KeyError, TypeError, AttributeError):
        raise UserError(path, "categories", "every category needs an id and a name") from None


def spec_change(out: Path, spec: DesignSpec, started: bool, force: bool = False) -> str:
    """How ``spec`` meets the settings stored in ``out``: ``"same"``, ``"new"`` (none stored) or
    ``"replace"``; a ``UserError`` when they differ from a design that ``started``.

    Other settings may replace the stored ones when the stored design never started (it
    produced no result: a pre-check refused it, or it was killed first) or ``force`` says to
    start over; the folder's earlier results belong to the old settings then.
    """
    path = out / SPEC_NAME
    if not path.is_file():
        return "new"
    mine = json.loads(json.dumps(spec.to_json()))
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        if started and not force:
            raise UserError(str(path), "", f"not readable JSON ({err}); choose a new --out, "
                            "or pass --force to start this design over") from None
        return "replace"
    stored = stored if isinstance(stored, dict) else {}
    if "db" in stored and "latency_db" not in stored:
        stored["latency_db"] = stored.pop("db")  # a design started before the rename
    stored.setdefault("init", [])  # a design started before --init existed started from scratch
    changed = [f.name for f in fields(spec) if stored.get(f.name) != mine[f.name]]
    if not changed:
        return "same"
    if started and not force:
        name = changed[0]
        raise UserError(str(path), name, f"this folder holds a design with {name} = {stored.get(name)!r}, "
                        f"not {mine[name]!r}; rerun with the same settings to resume, choose a new --out, "
                        "or pass --force to start this design over (its results are deleted)")
    return "replace"


def store_spec(out: Path, spec: DesignSpec) -> None:
    atomic_write_text(out / SPEC_NAME, json.dumps(spec.to_json(), indent=2) + "\n")
