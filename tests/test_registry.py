"""One registry type behind every name -> thing table: lookups fail in one line naming the
recipe field and the known names; registering refuses a second entry under a taken name."""

from __future__ import annotations

import pytest
from torch import nn

from tinynas.detect.heads import HEADS
from tinynas.detect.necks import NECKS
from tinynas.errors import UserError
from tinynas.latency.runtimes import RUNTIMES, load_runtime
from tinynas.nn.blocks import BLOCK_BUILDERS
from tinynas.registry import Registry
from tinynas.scores import SCORERS
from tinynas.train.assigners import ASSIGNERS
from tinynas.train.box_losses import BOX_LOSSES
from tinynas.train.cls_losses import CLS_LOSSES

TABLES = [(BLOCK_BUILDERS, "class"), (NECKS, "neck.type"), (HEADS, "head.type"), (SCORERS, "score"),
          (ASSIGNERS, "train.assigner"), (CLS_LOSSES, "train.cls_loss"), (BOX_LOSSES, "train.box_loss"),
          (RUNTIMES, "--runtime")]


@pytest.mark.parametrize("registry, field", TABLES, ids=[t[1] for t in TABLES])
def test_every_table_is_a_registry_whose_unknown_name_is_one_line(registry, field):
    assert isinstance(registry, Registry) and len(registry) >= 2
    first = next(iter(registry))
    assert registry.lookup(first) is registry[first] and first in registry
    with pytest.raises(UserError) as caught:
        registry.lookup("no-such-name", "recipe.yaml")
    err = caught.value
    assert (err.source, err.field) == ("recipe.yaml", field)
    assert f"unknown {registry.kind} 'no-such-name' (known: {', '.join(registry.names())}" in err.reason
    assert "\n" not in str(err)


def test_register_adds_refuses_a_taken_name_and_replaces_only_when_asked():
    table = Registry("widget", "parts.widget", {"a": int})
    assert table.register("b", float) is float and table.names() == ("a", "b")
    table.register("a", int)  # the same entry again: harmless

    @table.register("c")
    def build():
        return 3

    assert table.lookup("c") is build
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        table.register("a", str)
    table.register("a", str, replace=True)
    assert table["a"] is str
    with pytest.raises(ValueError, match="non-empty name"):
        table.register("", str)
    with pytest.raises(KeyError):  # a Mapping stays a Mapping
        table["z"]
    assert table.get("z") is None and dict(table) == {"a": str, "b": float, "c": build}
    assert table.unregister("b") is float and table.names() == ("a", "c")
    with pytest.raises(UserError, match="unknown widget 3"):
        table.lookup(3)


def test_a_registered_runtime_is_loaded_by_name():
    calls = []

    def loader(device, dtype, threads, cache_dir):
        calls.append((device, dtype, threads))
        return None

    RUNTIMES.register("test-runtime", loader)
    try:
        assert load_runtime(" Test-Runtime ", "cpu", "fp32", 2) is None and calls == [("cpu", "fp32", 2)]
    finally:
        RUNTIMES.unregister("test-runtime")
    with pytest.raises(UserError, match=r"--runtime: unknown runtime 'tvm' \(known: torch, onnxruntime"):
        load_runtime("tvm", "cpu", "fp32", 1)


def test_a_part_registry_keeps_its_contract_and_options():
    assert NECKS.contract == ("in_channels", "out_channels") and "depth" in NECKS.options("giraffe")
    with pytest.raises(ValueError, match="head 'zero' is already registered"):
        HEADS.register("zero", nn.Module)
