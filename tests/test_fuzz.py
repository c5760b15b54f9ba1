"""Property-based fuzzing: broken versions of every file a user hands us.

Each test starts from a valid document, mutates it (``fuzzing.py``) and hands it to the
command or reader a user would reach it through. The property: the input is accepted, or
refused with one ``tinynas: error:`` line and exit code 2 (``UserError`` in the library) —
never a traceback — and nothing is written outside the run's own folder. Examples are
derandomized, so CI sees the same inputs every run; the totals print at the end of the run.
"""

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import ROOT
from fuzzing import corrupted_text, mutated, record
from tinynas.archio import load_arch
from tinynas.cli import main
from tinynas.data.coco import CocoDataset
from tinynas.distill.chain import load_chain
from tinynas.errors import UserError
from tinynas.train.recipe import load_train_recipe
from train_helpers import TINY_ARCH

ESCAPE = Path("/tmp/tinynas-fuzz-escape")


def fuzz_settings(examples: int):
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


class Sandbox:
    """A folder holding the inputs (``in/``) and the run folder (``run/``, the working directory)."""

    def __init__(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="tinynas-fuzz-")
        self.root = Path(self._tmp.name)
        self.inputs = self.root / "in"
        self.run = self.root / "run"
        self.inputs.mkdir()
        self.run.mkdir()

    def write(self, name: str, text: str) -> Path:
        path = self.inputs / name
        path.write_text(text, encoding="utf-8")
        return path

    def outside(self) -> list[str]:
        """Paths written outside ``run/`` since the inputs were made."""
        return [str(p) for p in self.root.iterdir() if p.name not in ("in", "run")] + (
            [str(ESCAPE)] if ESCAPE.exists() else [])

    def close(self) -> None:
        self._tmp.cleanup()


@pytest.fixture
def sandbox():
    box = Sandbox()
    yield box
    box.close()


def cli(fmt: str, sandbox: Sandbox, argv: list[str], codes=(0, 2), count: bool = True) -> int:
    """Run ``tinynas ARGV`` inside the run folder; check the property; tally the input
    (``count=False`` for a second reader of the same input)."""
    err = io.StringIO()
    here = os.getcwd()
    os.chdir(sandbox.run)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
    finally:
        os.chdir(here)
    text = err.getvalue()
    assert "Traceback" not in text and "internal error" not in text, text
    assert code in codes, (code, text)
    message = None
    if code == 2:
        lines = [line for line in text.splitlines() if line.startswith("tinynas: error:")]
        assert len(lines) == 1, text
        message = lines[0].replace(str(sandbox.root), "SANDBOX")
    record(fmt, message, count)
    assert sandbox.outside() == []
    return code


def library(fmt: str, sandbox: Sandbox, call, count: bool = True) -> None:
    """Call a reader; only a ``UserError`` may come out of it."""
    here = os.getcwd()
    os.chdir(sandbox.run)
    try:
        call()
        message = None
    except UserError as err:
        message = str(err)
        assert "\n" not in message
        message = message.replace(str(sandbox.root), "SANDBOX")
    finally:
        os.chdir(here)
    record(fmt, message, count)
    assert sandbox.outside() == []


def dump(doc, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(doc)
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


# ------------------------------------------------------------------ architecture files
DAMO_T = load_arch(ROOT / "recipes" / "archs" / "damoyolo-t.txt").to_dicts("tinynas")
ARCHS = [{"blocks": TINY_ARCH}, {"blocks": DAMO_T}, DAMO_T]


@fuzz_settings(500)
@given(data=st.data(), base=st.sampled_from(range(len(ARCHS))), fmt=st.sampled_from(["yaml", "json", "txt"]),
       text_level=st.booleans())
def test_fuzz_architecture_files(sandbox, data, base, fmt, text_level):
    doc = ARCHS[base]
    if fmt == "txt":
        text = repr(doc if isinstance(doc, list) else doc["blocks"])
        text = data.draw(corrupted_text(text)) if text_level else repr(data.draw(mutated(doc)))
    else:
        text = dump(doc, fmt)
        text = data.draw(corrupted_text(text)) if text_level else dump(data.draw(mutated(doc)), fmt)
    path = sandbox.write(f"arch.{fmt}", text)
    cli("architecture", sandbox, ["info", str(path)])
    cli("architecture", sandbox, ["convert", str(path), "out.yaml", "--force"], count=False)


# ------------------------------------------------------------------ search spaces and recipes
K1KX = yaml.safe_load((ROOT / "search_spaces" / "k1kx.yaml").read_text())
SEARCH_RECIPE = {"space": "k1kx", "budgets": {"flops": "8G", "layers": 25}, "weights": [0, 0, 1, 1, 6],
                 "seed": 1, "batch_size": 20, "checkpoint_every": 20, "score": "madnas", "resolution": 224,
                 "blocks_per_child": 1, "limits": [None, None, {"out": [32, 96]}, None, None, None]}
# What a run may take is bounded on the command line, so a mutated recipe cannot ask for hours.
SEARCH_FLAGS = ["--candidates", "30", "--population", "6", "--jobs", "1", "--quiet", "--force"]


@fuzz_settings(200)
@given(data=st.data(), text_level=st.booleans())
def test_fuzz_search_spaces(sandbox, data, text_level):
    text = data.draw(corrupted_text(dump(K1KX, "yaml"))) if text_level else dump(data.draw(mutated(K1KX)), "yaml")
    path = sandbox.write("space.yaml", text)
    cli("search space", sandbox, ["search", "--space", str(path), "--budget", "flops=8G", "--out", "s",
                                  *SEARCH_FLAGS])


@fuzz_settings(200)
@given(data=st.data(), text_level=st.booleans())
def test_fuzz_search_recipes(sandbox, data, text_level):
    doc = SEARCH_RECIPE
    text = data.draw(corrupted_text(dump(doc, "yaml"))) if text_level else dump(data.draw(mutated(doc)), "yaml")
    path = sandbox.write("search.yaml", text)
    cli("search recipe", sandbox, ["search", str(path), "--out", "s", *SEARCH_FLAGS])


# ------------------------------------------------------------------ datasets, train and chain recipes
@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    """A small real COCO file over real images: 3 images, boxes of two classes."""
    root = tmp_path_factory.mktemp("coco")
    images = root / "images"
    images.mkdir()
    rng = np.random.RandomState(0)
    doc = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}]}
    for i in range(3):
        Image.fromarray((rng.rand(48, 64, 3) * 255).astype(np.uint8)).save(images / f"{i}.png")
        doc["images"].append({"id": i + 1, "file_name": f"{i}.png", "width": 64, "height": 48})
        doc["annotations"].append({"id": i + 1, "image_id": i + 1, "category_id": 1 + 2 * (i % 2),
                                   "bbox": [4.0, 5.0, 20.0, 10.0], "area": 200.0, "iscrowd": 0})
    return doc, images


@fuzz_settings(400)
@given(data=st.data(), text_level=st.booleans())
def test_fuzz_coco_json(sandbox, coco, data, text_level):
    doc, images = coco
    text = data.draw(corrupted_text(json.dumps(doc))) if text_level else json.dumps(data.draw(mutated(doc)))
    path = sandbox.write("ann.json", text)
    # `data check` exits 1 for a dataset it lists fatal problems of: a verdict, not a crash.
    cli("COCO JSON", sandbox, ["data", "check", str(path), "--images", str(images), "--quiet"], codes=(0, 1, 2))
    library("COCO JSON", sandbox, lambda: CocoDataset(path, images)[0], count=False)


def train_doc(images: Path) -> dict:
    paths = {"train_images": str(images), "train_annotations": "ann.json", "val_images": str(images),
             "val_annotations": "ann.json", "size": 64}
    return {"name": "tiny", "backbone": {"arch": TINY_ARCH, "wrap": "res", "out_indices": [2, 4, 5]},
            "neck": {"depth": 1.0, "out_channels": [32, 64, 128]}, "head": {"num_classes": 2},
            "data": paths, "train": {"epochs": 3, "batch_size": 4, "ema_decay": 0.999, "lr_per_64": 0.01},
            "augment": {"mosaic_prob": 0.5, "scale": [0.5, 1.5]}, "eval": {"iou": 0.6},
            "distill": {"method": "cwd", "tau": 1.0}}


@fuzz_settings(300)
@given(data=st.data(), text_level=st.booleans())
def test_fuzz_train_recipes(sandbox, coco, data, text_level):
    doc = train_doc(coco[1])
    text = data.draw(corrupted_text(dump(doc, "yaml"))) if text_level else dump(data.draw(mutated(doc)), "yaml")
    path = sandbox.write("train.yaml", text)
    library("train recipe", sandbox, lambda: load_train_recipe(path))


@fuzz_settings(150)
@given(data=st.data(), text_level=st.booleans())
def test_fuzz_chain_files(sandbox, coco, data, text_level):
    sandbox.write("stage.yaml", dump(train_doc(coco[1]), "yaml"))
    doc = {"name": "c", "stages": [{"name": "l", "recipe": "stage.yaml"},
                                   {"name": "s", "recipe": "stage.yaml", "overrides": {"train": {"epochs": 1}}}],
           "common": {"train": {"batch_size": 2}}, "distill": {"method": "mimic"}, "baseline": True}
    text = data.draw(corrupted_text(dump(doc, "yaml"))) if text_level else dump(data.draw(mutated(doc)), "yaml")
    path = sandbox.write("chain.yaml", text)
    library("chain file", sandbox, lambda: load_chain(path))


# ------------------------------------------------------------------ latency tables and sidecars
@pytest.fixture(scope="module")
def latency_files(tmp_path_factory):
    """A real table (written by the real writer) holding every op of a tiny arch at 64 px."""
    from tinynas.arch import arch_from_dicts
    from tinynas.latency.table import LatencyTable, base_meta, op_row, rows_frame, save_table
    from tinynas.ops import conv_ops

    root = tmp_path_factory.mktemp("table")
    arch_path = root / "arch.yaml"
    arch_path.write_text(yaml.safe_dump({"blocks": TINY_ARCH}))
    ops = conv_ops(arch_from_dicts(TINY_ARCH, "tiny"), 64)
    rows = [op_row(op) + [0.01 * (i + 1), 0.001, 5] for i, op in enumerate(ops)]
    save_table(LatencyTable(rows_frame(rows), base_meta("cpu", "fp32", 1), "tiny"), root / "t.csv")
    return arch_path, (root / "t.csv").read_text(), json.loads((root / "t.json").read_text())


def _reseal(meta: object, csv_text: str) -> object:
    """The sidecar with the hash of ``csv_text``, so a deliberate edit reaches the deeper checks."""
    import hashlib
    if isinstance(meta, dict):
        meta = {**meta, "sha256": hashlib.sha256(csv_text.encode("utf-8")).hexdigest()}
    return meta


@fuzz_settings(300)
@given(data=st.data(), target=st.sampled_from(["csv cell", "csv text", "sidecar"]), reseal=st.booleans())
def test_fuzz_latency_tables(sandbox, latency_files, data, target, reseal):
    arch_path, csv_text, meta = latency_files
    if target == "csv cell":
        lines = [line.split(",") for line in csv_text.splitlines()]
        row = data.draw(st.integers(0, len(lines) - 1))
        col = data.draw(st.integers(0, len(lines[row]) - 1))
        value = data.draw(st.sampled_from(["", "0", "-1", "-1e9", "nan", "inf", "1e308", "2.5", "x", "regular",
                                           "depthwise", "1,2", "999999999999999999999", " 7"]))
        lines[row][col] = value
        csv_text = "\n".join(",".join(cells) for cells in lines) + "\n"
    elif target == "csv text":
        csv_text = data.draw(corrupted_text(csv_text))
    else:
        meta = data.draw(mutated(meta))
    if reseal:
        meta = _reseal(meta, csv_text)
    table = sandbox.write("t.csv", csv_text)
    sandbox.write("t.json", json.dumps(meta))
    cli("latency table", sandbox, ["latency", "predict", str(arch_path), "--latency-db", str(table), "--resolution", "64"])


# ------------------------------------------------------------------ checkpoint metadata
@pytest.fixture(scope="module")
def checkpoint_doc():
    import torch
    from test_detect_io import CLASSES, tiny_model
    from tinynas.checkpoint import save_checkpoint

    with tempfile.TemporaryDirectory() as folder:
        save_checkpoint(Path(folder) / "c.pt", tiny_model(), CLASSES, extra={"epoch": 3, "best_ap": 0.5})
        return torch.load(Path(folder) / "c.pt", weights_only=True)


@fuzz_settings(250)
@given(data=st.data(), reseal=st.booleans())
def test_fuzz_checkpoint_metadata(sandbox, checkpoint_doc, data, reseal):
    import torch
    from tinynas.checkpoint import HASH_KEY, content_hash, load_detector

    meta = {k: v for k, v in checkpoint_doc.items() if k not in ("state_dict", HASH_KEY)}
    doc = data.draw(mutated(meta))
    if isinstance(doc, dict):
        doc = {**doc, "state_dict": checkpoint_doc["state_dict"]}
        doc[HASH_KEY] = content_hash(doc) if reseal else checkpoint_doc[HASH_KEY]
    path = sandbox.inputs / "c.pt"
    torch.save(doc, path)
    library("checkpoint metadata", sandbox, lambda: load_detector(path))
