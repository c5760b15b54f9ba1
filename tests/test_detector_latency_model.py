"""DetectorLatencyModel: a search candidate priced as the whole detector a recipe builds around it,
from a table built over the detectors a space can produce (``latency build --space --model``)."""

import pickle
import random
from collections import Counter
from dataclasses import replace

import pytest

from test_detect_io import tiny_recipe_doc
from tinynas.detect import parse_model_recipe
from tinynas.detect.conv_ops import detector_op_counts
from tinynas.detect.model_recipe import load_model_recipe
from tinynas.errors import UserError
from tinynas.latency import build_table, load_predictor
from tinynas.latency.build import build_grid
from tinynas.latency.detector_model import DetectorLatencyModel
from tinynas.latency.grid import covered, detector_groups, detector_ops
from tinynas.latency.validate import random_archs
from tinynas.resources import resolve_space_path
from tinynas.space import load_space, space_from_dict

TINY_SPACE = {
    "name": "tinyspace", "resolution": 32, "channel_divisor": 8,
    "defaults": {"out": [16, 40], "L": [1, 2], "btn_ratio": [0.5, 1.0], "kernels": [3]},
    "initial": [
        {"class": "ConvKXBNRELU", "in": 12, "out": 16, "s": 1, "k": 3},
        {"class": "SuperResK1KX", "in": 16, "out": 16, "s": 2, "k": 3, "L": 1, "btn": 8},
        {"class": "SuperResK1KX", "in": 16, "out": 16, "s": 2, "k": 3, "L": 2, "btn": 8},
        {"class": "SuperResK1KX", "in": 16, "out": 24, "s": 2, "k": 3, "L": 1, "btn": 16},
        {"class": "SuperResK1KX", "in": 24, "out": 32, "s": 2, "k": 3, "L": 1, "btn": 16},
    ],
    "blocks": [{"out": [16, 24]}, {"out": [16, 24]}, {"out": [16, 24]}, {"out": [16, 32]}, {"out": [24, 40]}],
}
IMAGE = 64


def tiny_space():
    return space_from_dict(TINY_SPACE, "tinyspace")


def tiny_recipe(wrap="res"):
    doc = tiny_recipe_doc(3, wrap)
    doc["backbone"]["arch"] = TINY_SPACE["initial"]
    return parse_model_recipe(doc, "tiny")


def around(recipe, arch):
    return replace(recipe, backbone=replace(recipe.backbone, arch=arch))


@pytest.fixture(scope="module")
def detector_table(tmp_path_factory):
    path = tmp_path_factory.mktemp("det") / "tiny-detectors.csv"
    build_table([tiny_space()], path, models=[tiny_recipe()], model_size=IMAGE, channel_step=16, runs=2,
                warmup=1, calibrate=False, progress=False)
    return path


def test_the_detector_grid_covers_every_detector_the_search_can_build(detector_table):
    space, recipe = tiny_space(), tiny_recipe()
    table = load_predictor(detector_table).table
    assert table.meta["status"] == "complete"
    assert table.meta["builds"][-1]["models"] == [f"tiny@{IMAGE} over tinyspace"]
    groups = detector_groups(space, recipe, IMAGE, channel_step=16)
    rng = random.Random(2)
    archs = random_archs(space, 12, seed=4)
    archs += [space.mutate(a, rng, 2) for a in archs]
    for arch in archs:
        for op, _ in detector_op_counts(around(recipe, arch), IMAGE):
            assert covered(groups, op), op


def test_the_model_prices_exactly_the_fused_detectors_convs(detector_table):
    space, recipe = tiny_space(), tiny_recipe()
    predictor = load_predictor(detector_table)
    model = DetectorLatencyModel(predictor, recipe)
    for arch in random_archs(space, 6, seed=9):
        traced = detector_op_counts(around(recipe, arch), IMAGE)
        assert model.op_counts(arch, IMAGE) == traced
        # a 12-channel stem sees the Focus output: the search's resolution is half the image
        assert model.predict_ms(arch, IMAGE // 2) == pytest.approx(predictor.predict_ops_ms(traced), rel=1e-12)
    assert len(model._neck_head_ms) > 1  # distinct level widths, each neck priced once


def test_the_model_pickles_with_its_caches_and_loads_a_table_by_path(detector_table):
    space, recipe = tiny_space(), tiny_recipe()
    archs = random_archs(space, 4, seed=1)
    model = DetectorLatencyModel(str(detector_table), recipe)
    before = [model.predict_ms(a, IMAGE // 2) for a in archs]
    copy = pickle.loads(pickle.dumps(model))
    assert copy._neck_head_ms == model._neck_head_ms
    assert [copy.predict_ms(a, IMAGE // 2) for a in archs] == before


def test_the_model_refuses_candidates_the_recipe_cannot_wrap(detector_table):
    recipe = tiny_recipe()
    model = DetectorLatencyModel(detector_table, recipe)
    arch = tiny_space().initial
    with pytest.raises(UserError, match="multiples of 32"):
        model.predict_detector_ms(arch, 48)
    three_stages = arch.with_block(4, arch.blocks[4].replace(stride=1))
    with pytest.raises(UserError, match="strides"):
        model.predict_ms(three_stages, IMAGE // 2)


@pytest.mark.parametrize("space_name, model_name", [("k1kx", "tinynas-n"), ("k1kx", "tinynas-p"),
                                                     ("kxkx", "damoyolo-m")])
def test_shipped_spaces_detector_grids_cover_their_random_detectors(space_name, model_name):
    space, recipe = load_space(resolve_space_path(space_name)), load_model_recipe(model_name)
    groups = detector_groups(space, recipe, 320, channel_step=64)
    for arch in random_archs(space, 10, seed=6):
        model = DetectorLatencyModel(None, recipe)
        for op, _ in model.op_counts(arch, 320):
            assert covered(groups, op), (arch.key, op)


def test_stage_variants_find_what_listing_every_combination_finds():
    # kxkx's CSP stage (3, 4) spans two blocks: holding one at a time finds the same ops.
    from itertools import product

    from tinynas.latency import grid
    from tinynas.plan import csp_stage_op_counts

    space, recipe = load_space(resolve_space_path("kxkx")), load_model_recipe("damoyolo-m")
    choices = [grid._position_choices(space, i, 64) for i in range(len(space.initial.blocks))]
    ins = sorted({s.out_channels for s in choices[2]})
    brute = set()
    for cin, a, b in product(ins, choices[3], choices[4]):
        brute.update(op for op, _ in csp_stage_op_counts.__wrapped__(grid._chain((a, b), cin), 40, False)[0])
    cases = grid._stage_variants(choices, (3, 4), ins, [choices[3][0], choices[4][0]])
    assert len(cases) < len(ins) * len(choices[3]) * len(choices[4]) / 4
    found = set()
    for cin, picked in cases:
        found.update(op for op, _ in csp_stage_op_counts.__wrapped__(grid._chain(picked, cin), 40, False)[0])
    assert found == brute
    assert brute <= detector_ops(space, recipe, 320, 64)  # stage (3, 4) reads 40x40 at a 320 image


def test_build_grid_with_a_space_and_a_model_is_the_detector_grid_not_the_bare_backbones():
    space, recipe = tiny_space(), tiny_recipe()
    ops, names, resolution = build_grid([space], [recipe], None, 8, IMAGE)
    assert names == [f"tiny@{IMAGE} over tinyspace"] and resolution == IMAGE
    assert set(ops) >= {op for op, _ in detector_op_counts(recipe, IMAGE)}
    bare = build_grid([space], [], None, 8)[0]
    assert not any(op.fused_residual and op.stride == 2 for op in ops)  # no stride-2 shortcut in the wrap
    assert any(op.fused_residual and op.stride == 2 for op in bare)  # the search-time blocks have one
    with pytest.raises(UserError, match="--size"):
        build_grid([space], [recipe], 32, 8, IMAGE)
    assert Counter(op.height for op in ops)[IMAGE // 2] > 0  # the Focus stem at half the image


# ---------------------------------------------------------------- a search priced as the whole detector
def _detector_search(table, out, budget, **extra):
    from tinynas.search import search

    return search(tiny_space(), [f"latency={budget}ms"], latency=str(table), detector=tiny_recipe(),
                  resolution=IMAGE // 2, population=12, candidates=500, batch_size=50, checkpoint_every=150,
                  seed=4, out=out, **extra)


def _budget(table) -> float:
    """Tighter than the initial detector, so the search must shrink it."""
    return 0.97 * DetectorLatencyModel(str(table), tiny_recipe()).predict_ms(tiny_space().initial, IMAGE // 2)


def test_a_search_with_a_detector_prices_each_candidate_as_the_whole_detector(detector_table, tmp_path):
    budget = _budget(detector_table)
    result = _detector_search(detector_table, tmp_path / "one", budget)
    model = DetectorLatencyModel(str(detector_table), tiny_recipe())
    best = result.best
    assert best.latency_ms == pytest.approx(model.predict_ms(best.arch, IMAGE // 2), rel=1e-12)
    assert best.latency_ms <= budget < model.predict_ms(tiny_space().initial, IMAGE // 2)
    # Workers get the model pickled; the result does not depend on them.
    _detector_search(detector_table, tmp_path / "two", budget, jobs=2)
    assert (tmp_path / "one" / "candidates.csv").read_bytes() == (tmp_path / "two" / "candidates.csv").read_bytes()


def test_a_crashed_detector_search_resumes_from_its_own_config(detector_table, tmp_path, monkeypatch):
    from tinynas.search import resume
    from tinynas.search.store import RunStore

    budget = _budget(detector_table)
    full = _detector_search(detector_table, tmp_path / "full", budget)
    # The search checkpoints every 150 candidates; the crash comes at the mark of candidate 300,
    # before it is written, so the run loses what it did after candidate 150.
    # Crashing on a count of pricings instead depended on how many distinct detectors the table
    # measured in this test let through (under load, few: the crash came before candidate 150).
    real_save = RunStore.save_checkpoint

    def crashing(self, config, strategy):
        if strategy.generated >= 300:
            raise RuntimeError("simulated crash")
        return real_save(self, config, strategy)

    monkeypatch.setattr(RunStore, "save_checkpoint", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _detector_search(detector_table, tmp_path / "crashed", budget)
    import json

    at_crash = json.loads((tmp_path / "crashed" / "checkpoint.json").read_text())["counters"]["candidates"]
    assert 150 <= at_crash < 300  # crashed part-way, after a checkpoint
    monkeypatch.setattr(RunStore, "save_checkpoint", real_save)
    resumed = resume(tmp_path / "crashed")  # the recipe and the table come from the checkpoint
    assert (tmp_path / "crashed" / "candidates.csv").read_bytes() == (tmp_path / "full" / "candidates.csv").read_bytes()
    assert resumed.best.hash == full.best.hash


def test_a_detector_needs_a_table_path(detector_table):
    from tinynas.search import search

    class Fixed:
        def predict_ms(self, arch, resolution):
            return 1.0

    with pytest.raises(UserError, match="detector: a whole-detector latency is priced from a latency table"):
        search(tiny_space(), ["latency=2ms"], latency=Fixed(), detector=tiny_recipe(), candidates=10)
    with pytest.raises(UserError, match="detector: a whole-detector latency is priced from a latency table"):
        search(tiny_space(), ["layers=30"], detector=tiny_recipe(), candidates=10)


@pytest.mark.parametrize("neck, head", [({"type": "reppan", "depth": 0.33}, {"type": "effidehead"}),
                                        ({"type": "pafpn", "depth": 0.33}, {"type": "decoupled"}),
                                        ({"type": "giraffe", "act": "silu"}, {"type": "zero"})])
def test_other_necks_and_heads_are_priced_from_their_traced_convolutions(neck, head):
    doc = tiny_recipe_doc(3, "res")
    doc["backbone"]["arch"] = TINY_SPACE["initial"]
    doc["neck"] = {**neck, "out_channels": [16, 32, 64]}
    doc["head"] = {**head, "num_classes": 3}
    recipe = parse_model_recipe(doc, "other-parts")
    model = DetectorLatencyModel("unused.csv", recipe)  # op lists need no table
    rng = random.Random(3)
    space = tiny_space()
    arch = space.initial
    for _ in range(3):
        assert Counter(dict(model.op_counts(arch, IMAGE))) == Counter(dict(detector_op_counts(around(recipe, arch), IMAGE)))
        arch = space.mutate(arch, rng)


def test_a_wrap_the_plan_does_not_state_is_refused_in_one_line():
    doc = tiny_recipe_doc(3, "res")
    doc["backbone"]["arch"] = TINY_SPACE["initial"]
    doc["backbone"]["wrap"] = "efficientrep"
    doc["neck"] = {"type": "reppan", "out_channels": [16, 32, 64], "depth": 0.33}
    doc["head"] = {"type": "effidehead", "num_classes": 3}
    with pytest.raises(UserError, match=r"backbone.wrap: a search candidate is priced in the res or csp wrap"):
        DetectorLatencyModel("unused.csv", parse_model_recipe(doc, "v6"))


@pytest.mark.parametrize("model_name", ["tinynas-n", "tinynas-p"])
def test_the_shipped_onnxruntime_table_prices_every_k1kx_detector_of_both_small_recipes(model_name):
    # design's default onnxruntime table: a k1kx search inside either recipe is priced from
    # measured rows (no op outside the table's grid), for one class and for COCO's 80.
    predictor = load_predictor("cpu-ort-fp32-tinynas-n")
    for classes in (1, 80):
        recipe = load_model_recipe(model_name).with_num_classes(classes)
        model = DetectorLatencyModel(predictor, recipe)
        for arch in random_archs(load_space(resolve_space_path("k1kx")), 6, seed=classes):
            assert model.predict_ms(arch, 160) > 0


def test_tinynas_p_is_tinynas_n_with_a_shallower_neck_and_reaches_under_its_floor():
    n, p = load_model_recipe("tinynas-n"), load_model_recipe("tinynas-p")
    assert replace(p, name=n.name, neck=n.neck) == n and p.neck == replace(n.neck, depth=0.5)
    predictor = load_predictor("cpu-ort-fp32-tinynas-n")
    n_model, p_model = (DetectorLatencyModel(predictor, r.with_num_classes(1)) for r in (n, p))
    arch = n.backbone.arch
    # Two blocks of each neck stage instead of three: ~3 of tinynas-n's ~23 table ms.
    saved = n_model.predict_detector_ms(arch, 320) - p_model.predict_detector_ms(arch, 320)
    assert 2.0 < saved < 4.5
    # The same holds around the k1kx space's initial backbone, where a search starts.
    initial = load_space(resolve_space_path("k1kx")).initial
    assert p_model.predict_ms(initial, 160) < 0.9 * n_model.predict_ms(initial, 160)
