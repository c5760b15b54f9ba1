"""The evolutionary search: budgets hold, it improves, it repeats, it never judges twice."""

import csv
import json
import time
from collections import Counter

import pytest

from conftest import ROOT
from tinynas import UserError, arch_costs, conv_op_counts, load_arch
from tinynas.scores import create_scorer
from tinynas.search import candidate_hash, search
from tinynas.space import load_space

SPACE = ROOT / "search_spaces" / "k1kx.yaml"


class OpTableLatency:
    """A per-op latency table the test builds: a fixed cost per conv plus a cost per MAC."""

    def __init__(self, per_op_ms=0.004, per_gmac_ms=3.0, overhead_ms=0.05):
        self.per_op_ms, self.per_gmac_ms, self.overhead_ms = per_op_ms, per_gmac_ms, overhead_ms
        self.table = {}
        self.calls = Counter()

    def op_ms(self, op):
        if op not in self.table:
            macs = op.out_height * op.out_width * op.out_channels * (op.in_channels // op.groups) * op.kernel ** 2
            self.table[op] = self.per_op_ms + self.per_gmac_ms * macs / 1e9
        return self.table[op]

    def predict_ms(self, arch, resolution):
        self.calls[arch.key] += 1
        return self.overhead_ms + sum(n * self.op_ms(op) for op, n in conv_op_counts(arch, resolution))


@pytest.fixture(scope="module")
def space():
    return load_space(SPACE)


def assert_within(arch, budgets_ok, latency_model=None, resolution=320):
    costs = arch_costs(arch, resolution)
    values = {"flops": 2 * costs.macs, "params": costs.params_fused, "layers": costs.layers}
    if latency_model is not None:
        values["latency"] = latency_model.predict_ms(arch, resolution)
    for kind, limit in budgets_ok.items():
        assert values[kind] <= limit, (kind, values[kind], limit)


def test_every_reported_architecture_fits_every_budget_and_beats_the_initial(space):
    latency = OpTableLatency()
    initial_ms = latency.predict_ms(space.initial, 320)
    budgets = {"latency": 2 * initial_ms, "flops": 10e9, "params": 6e6, "layers": 20}
    result = search(space, [f"latency={budgets['latency']}ms", "flops=10G", "params=6M", "layers=20"],
                    latency=latency, population=32, candidates=3000, seed=5, batch_size=256)
    checker = OpTableLatency()
    for member in result.rungs[0].population:
        assert space.contains(member.arch)
        assert_within(member.arch, budgets, checker)
        assert member.latency_ms == pytest.approx(checker.predict_ms(member.arch, 320))
    initial = create_scorer("madnas")(space.initial)
    assert result.initial_score == pytest.approx(initial)
    assert result.best.score == pytest.approx(create_scorer("madnas")(result.best.arch))
    assert result.best.score > 1.3 * initial
    scores = [m.score for m in result.rungs[0].population]
    assert scores == sorted(scores, reverse=True) and len(scores) == 32
    assert len({m.hash for m in result.rungs[0].population}) == 32


def test_a_candidate_is_never_judged_twice(space):
    latency = OpTableLatency()
    limit = 2 * OpTableLatency().predict_ms(space.initial, 320)
    result = search(space, [f"latency={limit}ms", "layers=20"], latency=latency, population=8,
                    candidates=2000, seed=1, batch_size=64)
    # A small population repeats itself a lot: duplicates are generated, never re-judged.
    assert result.duplicates > 0
    assert result.evaluated + result.duplicates == result.candidates + 1  # + the initial seed
    assert max(latency.calls.values()) == 1
    assert len(latency.calls) <= result.evaluated


def test_same_seed_same_result_with_one_or_two_jobs(space):
    kwargs = dict(population=24, candidates=2500, seed=11, batch_size=200, stage_weights=[0, 0, 1, 1, 16])
    budgets = [f"latency={1.5 * OpTableLatency().predict_ms(space.initial, 320)}ms", "layers=25"]
    one = search(space, budgets, jobs=1, latency=OpTableLatency(), **kwargs)
    two = search(space, budgets, jobs=2, latency=OpTableLatency(), **kwargs)
    again = search(space, budgets, jobs=1, latency=OpTableLatency(), **kwargs)
    other = search(space, budgets, jobs=1, latency=OpTableLatency(), **{**kwargs, "seed": 12})
    members = lambda r: [(m.hash, m.score) for m in r.rungs[0].population]
    assert members(one) == members(two) == members(again)
    assert one.best.arch == two.best.arch
    assert (one.evaluated, one.duplicates) == (two.evaluated, two.duplicates)
    assert members(other) != members(one)


def test_ladder_gives_one_best_per_rung_and_the_score_grows_with_the_budget(space):
    latency = OpTableLatency()
    base = latency.predict_ms(space.initial, 320)
    limits = [0.8 * base, 1.5 * base, 3 * base]
    ladder = "latency=" + ",".join(f"{x:.6f}ms" for x in limits)
    result = search(space, ["layers=25"], ladder=ladder, latency=latency, population=24,
                    candidates=4000, seed=2, batch_size=256)
    assert [r.label for r in result.rungs] == [f"best-latency-{float(f'{x:.6f}'):g}ms" for x in limits]
    scores = [r.best.score for r in result.rungs]
    assert scores[0] < scores[1] < scores[2]
    checker = OpTableLatency()
    for rung, limit in zip(result.rungs, limits):
        for member in rung.population:
            assert_within(member.arch, {"latency": limit * (1 + 1e-6), "layers": 25}, checker)
    # The tightest rung is below the initial architecture: its seed came from a downhill walk.
    assert result.rungs[0].best.arch != space.initial


def test_impossible_budget_fails_fast_with_a_clear_message(space):
    started = time.perf_counter()
    with pytest.raises(UserError) as info:
        search(space, ["flops=10M"], candidates=1000, start_tries=2000)
    assert time.perf_counter() - started < 30
    message = str(info.value)
    assert "impossible budget (flops=10M)" in message and "2000 mutations" in message
    assert "\n" not in message


def test_a_budget_below_the_initial_architecture_is_reached(space):
    initial_flops = 2 * arch_costs(space.initial, 320).macs
    result = search(space, [f"flops={initial_flops * 0.6:.0f}"], population=16, candidates=1500, seed=3)
    assert 2 * result.best.macs <= 0.6 * initial_flops


@pytest.mark.parametrize("kwargs, field", [
    (dict(budgets=["latency=0.1ms"]), "latency"),
    (dict(budgets=["layers=20"], stage_weights=[1, 1, 1]), "stage_weights"),
    (dict(budgets=["layers=20"], population=0), "population"),
    (dict(budgets=["layers=20"], ladder="layers=20,30"), "ladder"),
    (dict(budgets=["flops=3G"], ladder="layers=20"), "ladder"),
])
def test_bad_arguments_are_user_errors(space, kwargs, field):
    with pytest.raises(UserError) as info:
        search(space, **kwargs)
    assert info.value.field == field


def test_output_folder_holds_log_best_architectures_summary_and_plot(space, tmp_path):
    out = tmp_path / "run"
    latency = OpTableLatency()
    result = search(space, ["layers=20"], ladder="flops=3G,6G", latency=latency, population=16,
                    candidates=1200, seed=4, batch_size=128, checkpoint_every=500, out=out)
    names = {p.name for p in out.iterdir()}
    assert {"candidates.csv", "checkpoint.json", "summary.json", "pareto.png",
            "best-flops-3G.yaml", "best-flops-3G.txt", "best-flops-6G.yaml", "best-flops-6G.txt"} <= names
    with open(out / "candidates.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == result.evaluated
    assert len({r["hash"] for r in rows}) == len(rows)
    within = [r for r in rows if r["within_budget"] == "1"]
    assert len(within) == result.within_budget
    assert all(r["score"] == "" for r in rows if r["within_budget"] == "0")
    assert all(int(r["flops"]) == 2 * int(r["macs"]) for r in rows)
    assert all(int(r["flops"]) <= 6e9 and int(r["layers"]) <= 20 for r in within)
    assert all(("0" in r["rungs"].split(";")) == (int(r["flops"]) <= 3e9) for r in within)
    for rung in result.rungs:
        from_yaml = load_arch(out / f"{rung.label}.yaml")
        from_text = load_arch(out / f"{rung.label}.txt")
        assert from_yaml == from_text == rung.best.arch
        assert candidate_hash(from_yaml) == rung.best.hash
        assert "SuperResConvK1KX" in (out / f"{rung.label}.txt").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seed"] == 4 and summary["config"]["population"] == 16
    assert summary["counters"]["candidates"] == 1200
    assert summary["versions"]["tinynas"] and summary["device"]["cpus"]
    assert summary["timings"]["seconds"] > 0
    assert [r["best"]["hash"] for r in summary["rungs"]] == [r.best.hash for r in result.rungs]
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(UserError, match="already holds a search"):
        search(space, ["layers=20"], candidates=10, out=out)


def test_packed_architectures_cross_to_workers_unchanged(space, rng):
    from tinynas.search.packing import pack, unpack
    for _ in range(20):
        arch = space.random_arch(rng, 8)
        back = unpack(pack(arch))
        assert back == arch and back.key == arch.key and candidate_hash(back) == candidate_hash(arch)
        assert arch_costs(back, 320) == arch_costs(arch, 320)


def test_the_search_package_is_not_shadowed_and_calling_it_searches():
    import sys

    import tinynas
    import tinynas.search

    assert tinynas.search is sys.modules["tinynas.search"]  # the package, not a function bound over it
    assert tinynas.search.resume is tinynas.search.evolution.resume
    called = tinynas.search("k1kx", ["layers=20"], candidates=60, population=16, seed=1)
    direct = tinynas.search.search("k1kx", ["layers=20"], candidates=60, population=16, seed=1)
    assert called.best.arch == direct.best.arch and called.best.score == direct.best.score
