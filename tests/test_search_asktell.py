"""Driving the search from outside: ask/tell, a proxy of one's own, saving and loading the state."""

import csv
import json

import pytest

from tinynas import UserError, arch_costs
from tinynas.cli import main
from tinynas.search import Evolution, create_evolution, search

SETTINGS = dict(population=24, seed=11, stage_weights=[0, 0, 1, 1, 16])
BUDGETS = ["flops=6G", "layers=25"]
CANDIDATES, BATCH = 2500, 200


def judge_all(evaluator, candidates):
    return [evaluator.evaluate(c.arch) for c in candidates]


def pipelined_loop(evolution, evaluator, candidates=CANDIDATES, batch=BATCH, told=None, stop_at=None):
    """The schedule of ``search``: ask for the next batch before telling the previous one.

    ``stop_at``: return early, with a batch asked and not told, like a killed search.
    """
    pending = evolution.pending
    while True:
        children = evolution.ask(min(batch, candidates - evolution.generated))
        if not children and not pending and evolution.generated >= candidates:
            break
        results = judge_all(evaluator, pending)
        evolution.tell(pending, results)
        if told is not None:
            told.extend((c.step, c.hash) for c in pending)
        pending = children
        if stop_at is not None and evolution.generated >= stop_at:
            return


def started(settings=SETTINGS, budgets=BUDGETS, told=None):
    evolution, evaluator = create_evolution("k1kx", budgets, **settings)
    seeds, results = evolution.start(evaluator)
    evolution.tell(seeds, results)
    if told is not None:
        told.extend((c.step, c.hash) for c in seeds)
    return evolution, evaluator


def test_an_outside_ask_tell_loop_finds_what_search_finds(tmp_path):
    told = []
    evolution, evaluator = started(told=told)
    pipelined_loop(evolution, evaluator, told=told)
    run = search("k1kx", BUDGETS, candidates=CANDIDATES, batch_size=BATCH, out=tmp_path / "run", **SETTINGS)
    assert evolution.best[0].arch == run.best.arch
    assert [(m.hash, m.score) for m in evolution.populations_[0].members] == \
        [(m.hash, m.score) for m in run.rungs[0].population]
    assert (evolution.counters_["candidates"], evolution.counters_["evaluated"],
            evolution.counters_["duplicates"]) == (run.candidates, run.evaluated, run.duplicates)
    # The very same candidates were judged, in the same order.
    with open(tmp_path / "run" / "candidates.csv", newline="") as handle:
        logged = [(int(row["step"]), row["hash"]) for row in csv.DictReader(handle)]
    assert told == logged


def test_the_command_line_search_finds_the_same_best(tmp_path, capsys):
    evolution, evaluator = started(budgets=["flops=8G", "layers=25"], settings=dict(population=16, seed=3, stage_weights=[0, 0, 1, 1, 6]))
    pipelined_loop(evolution, evaluator, candidates=1000, batch=100)
    out = tmp_path / "cli"
    assert main(["search", "--space", "k1kx", "--budget", "flops=8G", "--budget", "layers=25",
                 "--population", "16", "--seed", "3", "--candidates", "1000", "--batch-size", "100",
                 "--stage-weights", "0,0,1,1,6", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rungs"][0]["best"]["hash"] == evolution.best[0].hash
    assert summary["counters"] == evolution.counters_


def test_a_proxy_of_ones_own_decides_the_population():
    """Score by FLOPs (bigger is better): the best is the biggest network judged within budget."""
    evolution, evaluator = started(budgets=["flops=4G"], settings=dict(population=8, seed=2))
    told = []
    while evolution.generated < 600:
        children = evolution.ask(50)  # the simplest loop: each batch told before the next is asked
        results = [ev._replace(score=None if ev.score is None else 2.0 * ev.macs)
                   for ev in judge_all(evaluator, children)]
        evolution.tell(children, results)
        told.extend(zip(children, results))
    within = [(ev.score, c.hash) for c, ev in told if ev.score is not None]
    assert within and all(2 * ev.macs <= 4e9 for _, ev in told if ev.score is not None)
    best = evolution.best[0]
    assert best.score == 2.0 * arch_costs(best.arch, 320).macs
    assert best.score == max(score for score, _ in within)
    assert [m.score for m in evolution.populations_[0].members] == \
        sorted((m.score for m in evolution.populations_[0].members), reverse=True)


def test_a_saved_state_continues_exactly(tmp_path):
    whole, evaluator = started()
    pipelined_loop(whole, evaluator)

    first, evaluator = started()
    pipelined_loop(first, evaluator, stop_at=1100)
    # Stopped with a batch asked but not told: the state carries it.
    asked = first.pending
    state = json.loads(json.dumps(first.state_dict()))
    assert len(asked) > 0 and [c.hash for c in asked] == [c[1] for c in state["pending"]]

    second = Evolution(first.space, **{k: getattr(first, k) for k in ("population", "blocks_per_child", "seed")})
    second.load_state_dict(state)
    assert [c.hash for c in second.pending] == [c.hash for c in asked]
    pipelined_loop(second, evaluator)
    assert [(m.hash, m.score) for m in second.populations_[0].members] == \
        [(m.hash, m.score) for m in whole.populations_[0].members]
    assert second.counters_ == whole.counters_
    assert second.state_dict() == whole.state_dict()

    without_seen = first.state_dict(include_seen=False)
    with pytest.raises(ValueError, match="told_hashes"):
        Evolution(first.space).load_state_dict(without_seen)


def test_only_asked_candidates_are_told_once():
    evolution, evaluator = started(settings=dict(population=8, seed=1))
    children = evolution.ask(20)
    results = judge_all(evaluator, children)
    with pytest.raises(ValueError, match="2 candidates but 1 results"):
        evolution.tell(children[:2], results[:1])
    evolution.tell(children, results)
    with pytest.raises(ValueError, match="not asked for, or was told already"):
        evolution.tell(children[:1], results[:1])


def test_removed_cluster_backends_are_refused(tmp_path, capsys):
    with pytest.raises(UserError) as info:
        search("k1kx", BUDGETS, candidates=10, backend="dask", out=tmp_path / "run")
    assert info.value.field == "backend" and "loky, threading, multiprocessing" in str(info.value)
    assert not (tmp_path / "run").exists()
    with pytest.raises(SystemExit):
        main(["search", "--space", "k1kx", "--budget", "layers=25", "--backend", "ray"])
    assert "invalid choice: 'ray'" in capsys.readouterr().err
