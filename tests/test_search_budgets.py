"""Budget text: units, multipliers, ladders, and one clear error per mistake."""

import pytest

from tinynas import UserError
from tinynas.search.budgets import (Budget, coerce_budgets, over_budget, parse_budget, parse_ladder,
                                    rung_label)


@pytest.mark.parametrize("text", ["latency=0.12ms", "latency=120us", "latency=1.2e-4s", "latency=0.12",
                                  "LATENCY = 0.12 ms"])
def test_latency_units_all_mean_milliseconds(text):
    budget = parse_budget(text)
    assert budget.kind == "latency"
    assert budget.limit == pytest.approx(0.12)


@pytest.mark.parametrize("text, kind, limit", [
    ("flops=3.5G", "flops", 3.5e9), ("flops=3.5GFLOPs", "flops", 3.5e9), ("macs=800M", "macs", 8e8),
    ("params=8M", "params", 8e6), ("params=8e6", "params", 8e6), ("params=512k", "params", 512e3),
    ("layers=25", "layers", 25),
])
def test_count_budgets_scale_by_their_multiplier(text, kind, limit):
    assert parse_budget(text) == Budget(kind, limit)


@pytest.mark.parametrize("text, words", [
    ("speed=3ms", "unknown budget"), ("latency", "KIND=VALUE"), ("latency=3hours", "time unit"),
    ("flops=3X", "multiplier"), ("layers=2.5", "whole number"), ("layers=25M", "whole number"),
    ("params=-1M", "cannot read"), ("flops=0", "positive"), ("latency=fast", "cannot read"),
])
def test_bad_budgets_name_the_field(text, words):
    with pytest.raises(UserError) as info:
        parse_budget(text, "recipe.yaml", "budgets")
    assert info.value.source == "recipe.yaml" and info.value.field == "budgets"
    assert words in str(info.value)


def test_ladder_is_sorted_and_checked():
    rungs = parse_ladder("latency=0.2ms,0.08ms,0.12ms")
    assert [b.limit for b in rungs] == pytest.approx([0.08, 0.12, 0.2])
    assert rung_label(rungs[0]) == "latency-0.08ms"
    with pytest.raises(UserError, match="at least two"):
        parse_ladder("latency=0.1ms")
    with pytest.raises(UserError, match="repeat"):
        parse_ladder("flops=1G,1000M")


def test_budgets_from_mapping_or_strings_keep_one_per_kind():
    from_map = coerce_budgets({"layers": 25, "latency": "0.12ms"})
    from_list = coerce_budgets(["latency=0.3ms", "layers=25", "latency=0.12ms"])
    assert from_map == from_list == (Budget("latency", 0.12), Budget("layers", 25))
    broken = over_budget(from_map, {"latency": 0.2, "layers": 25})
    assert broken == [Budget("latency", 0.12)]
    with pytest.raises(UserError):
        coerce_budgets(42, "r.yaml", "budgets")
