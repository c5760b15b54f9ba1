"""The MAE score: closed form against its formula, forward pass against the closed form."""

import json
import math
import random

import pytest
from scipy.stats import kendalltau

from conftest import space_path
from tinynas import UserError, arch_from_dicts
from tinynas.scores import (DEFAULT_STAGE_WEIGHTS, SCORERS, EntropyScore, MadnasScore, StageScore,
                            create_scorer, register_scorer)
from tinynas.space import load_space

TINY = [
    {"class": "ConvKXBNRELU", "in": 12, "out": 16, "s": 1, "k": 3},
    {"class": "SuperResK1KX", "in": 16, "out": 32, "s": 2, "k": 3, "L": 2, "btn": 16},
    {"class": "SuperResKXKX", "in": 32, "out": 64, "s": 2, "k": 5, "L": 1, "btn": 24},
    {"class": "SuperResK1KXK1", "in": 64, "out": 64, "s": 1, "k": 3, "L": 1, "btn": 32},
    {"class": "SuperResK1DWK1", "in": 64, "out": 96, "s": 2, "k": 3, "L": 2, "btn": 192},
]


def test_madnas_matches_the_published_formula():
    arch = arch_from_dicts(TINY)
    ls = lambda x: math.log(math.sqrt(x))
    stem = ls(12 * 9)
    k1kx = (ls(16) + ls(16 * 9)) + (ls(32) + ls(16 * 9))         # L=2: second unit sees out
    kxkx = ls(32 * 25) + ls(24 * 25)
    k1kxk1 = ls(64) + ls(32 * 9) + ls(32)
    k1dwk1 = (ls(64) + ls(9) + ls(192)) + (ls(96) + ls(9) + ls(192))
    # Stride-2 blocks 1, 2, 4 close the stages ending at blocks 0, 1, 3; the last closes 4.
    stages = [stem + math.log(16), stem + k1kx + math.log(32),
              stem + k1kx + kxkx + k1kxk1 + math.log(64),
              stem + k1kx + kxkx + k1kxk1 + k1dwk1 + math.log(96)]
    weights = (0.5, 1.0, 2.0, 3.0)
    expected = sum(w * s for w, s in zip(weights, stages))
    scorer = MadnasScore(weights)
    assert scorer.stage_scores(arch) == pytest.approx(stages, rel=1e-12)
    assert scorer(arch) == pytest.approx(expected, rel=1e-12)


def test_stage_weight_count_must_match_stages():
    arch = arch_from_dicts(TINY)
    with pytest.raises(UserError, match="4 stage weights|5 stage weights"):
        MadnasScore(DEFAULT_STAGE_WEIGHTS)(arch)


def test_entropy_equals_closed_form_without_padding_effects():
    # With 1x1 kernels zero padding never reaches the output, so the forward pass measures
    # exactly the gains the closed form predicts, up to sampling noise.
    # Averaged over draws, each block's log-std lands within sampling noise of the closed
    # form; a missing conv or a wrong fan-in would move a block by log(sqrt(2)) or more.
    blocks = [dict(b, k=1) for b in TINY]
    arch = arch_from_dicts(blocks)
    closed = MadnasScore().block_logs(arch)
    forward = EntropyScore(resolution=16, batch=2, repeats=32, seed=0).block_logs(arch)
    assert forward == pytest.approx(closed, abs=0.1)


def test_entropy_is_repeatable_and_seeded():
    arch = arch_from_dicts(TINY)
    w = (0, 1, 1, 1)
    a = EntropyScore(w, resolution=32, batch=2, seed=1)(arch)
    assert a == EntropyScore(w, resolution=32, batch=2, seed=1)(arch)
    assert a != EntropyScore(w, resolution=32, batch=2, seed=2)(arch)
    assert math.isfinite(a)


@pytest.mark.parametrize("name", ["k1kx", "k1dwk1"])
def test_forward_pass_and_closed_form_rank_alike(name):
    space = load_space(space_path(name))
    rng = random.Random(21)
    archs = [space.random_arch(rng, steps=20) for _ in range(100)]
    closed = [MadnasScore()(a) for a in archs]
    forward = [EntropyScore(resolution=64, batch=2, seed=3)(a) for a in archs]
    tau = kendalltau(closed, forward)[0]
    assert tau >= 0.9


def test_registry_builds_scorers_by_name():
    assert {"madnas", "entropy"} <= set(SCORERS)
    assert isinstance(create_scorer("madnas"), MadnasScore)

    @register_scorer("width-test")
    class WidthScore(StageScore):
        def block_logs(self, arch):
            return [math.log(b.out_channels) for b in arch.blocks]

    try:
        arch = arch_from_dicts(TINY)
        scorer = create_scorer("width-test", weights=(0, 0, 0, 1))
        assert scorer(arch) == pytest.approx(sum(math.log(b["out"]) for b in TINY) + math.log(96))
    finally:
        SCORERS.unregister("width-test")
    with pytest.raises(UserError, match="unknown score"):
        create_scorer("zen")


def test_score_grows_with_width_and_depth():
    space = load_space(space_path("k1kx"))
    base = space.initial
    wider = base.with_block(5, base.blocks[5].replace(out_channels=512, bottleneck=256))
    deeper = base.with_block(3, base.blocks[3].replace(depth=3))
    s = MadnasScore()
    assert s(wider) > s(base) and s(deeper) > s(base)


def test_entropy_memory_estimate_is_the_worst_conv_by_hand():
    from tinynas.memory import arch_forward_bytes

    arch = arch_from_dicts([{"class": "ConvKXBNRELU", "in": 3, "out": 8, "s": 2, "k": 3},
                            {"class": "ConvKXBNRELU", "in": 8, "out": 64, "s": 1, "k": 5}])
    batch, res = 2, 16
    stem = batch * 3 * 16 * 16 + 8 * 3 * 9 + 2 * batch * 8 * 8 * 8       # input, weight, output and x/std
    second = batch * 8 * 8 * 8 + 64 * 8 * 25 + 2 * batch * 64 * 8 * 8
    assert arch_forward_bytes(arch, batch, res) == 4 * max(stem, second) == 4 * second


def test_entropy_refuses_a_forward_pass_that_cannot_fit_before_allocating(tmp_path, capsys, monkeypatch):
    import torch

    from tinynas.cli import main

    # 60000 channels are within the structural limits, but batch 8 at 320 x 320 is ~189 GiB.
    path = tmp_path / "wide.json"
    path.write_text(json.dumps([{"class": "ConvKXBNRELU", "in": 3, "out": 60000, "s": 2, "k": 3},
                                {"class": "ConvKXBNRELU", "in": 60000, "out": 60000, "s": 2, "k": 3}]))

    def no_allocation(*args, **kwargs):
        raise AssertionError("the entropy score allocated before refusing")

    monkeypatch.setattr(torch, "randn", no_allocation)
    assert main(["score", str(path), "--method", "entropy", "--batch-size", "4096"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"tinynas: error: {path}: batch x resolution:")
    assert "needs ~" in lines[0] and "available" in lines[0] and "TiB" in lines[0]


def test_entropy_runs_when_the_estimate_fits_and_stops_when_memory_is_short(monkeypatch):
    from tinynas import memory

    arch = arch_from_dicts(TINY)
    scorer = EntropyScore(resolution=32, batch=2)
    needed = memory.arch_forward_bytes(arch, 2, 32)
    monkeypatch.setattr(memory, "available_memory", lambda device=None: needed)
    assert all(math.isfinite(log) for log in scorer.block_logs(arch))
    monkeypatch.setattr(memory, "available_memory", lambda device=None: needed - 1)
    with pytest.raises(UserError) as err:
        scorer.block_logs(arch)
    assert err.value.field == "batch x resolution" and "available" in err.value.reason
