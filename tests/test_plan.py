"""tinynas.plan and tinynas.neck_plan: a wrapped backbone and a detector's neck and head as data,
checked against the torch modules they describe (traced on the meta device, fused)."""

import random
import subprocess
import sys
from collections import Counter

import pytest
import torch

from tinynas.arch import Arch
from tinynas.detect import build_backbone, load_model_recipe
from tinynas.detect.conv_ops import detector_op_counts, traced_backbone_op_counts
from tinynas.detect.model_recipe import BackboneConfig, HeadConfig, ModelRecipe, NeckConfig, output_strides
from tinynas.latency.validate import random_archs
from tinynas.neck_plan import neck_head_op_counts
from tinynas.ops import conv_op_counts
from tinynas.plan import image_size, plan, searched_size
from tinynas.resources import resolve_space_path
from tinynas.space import load_space

SPACES = ("k1kx", "kxkx", "k1kxk1", "k1dwk1")
SHIPPED_MODELS = ("damoyolo-t", "damoyolo-s", "damoyolo-m", "damoyolo-l", "tinynas-n", "tinynas-p")
SIZE = 320


def space_archs(name: str) -> list[Arch]:
    """The space's initial architecture, random members and mutations of them."""
    space = load_space(resolve_space_path(name))
    drawn = random_archs(space, 3, seed=11)
    rng = random.Random(5)
    return [space.initial] + drawn + [space.mutate(a, rng, 2) for a in drawn]


def backbone_recipe(arch: Arch, wrap: str, focus: bool, spp: bool = True) -> ModelRecipe:
    return ModelRecipe(BackboneConfig(arch, wrap, plan(arch, wrap, focus).out_indices, focus, spp))


def test_the_plan_imports_no_torch():
    code = ("import sys, tinynas.plan, tinynas.neck_plan; "
            "sys.exit(1 if any(m == 'torch' or m.startswith('torch.') for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize("focus", [True, False])
@pytest.mark.parametrize("wrap", ["res", "csp"])
@pytest.mark.parametrize("space", SPACES)
def test_plan_lists_the_convs_and_levels_the_wrapped_backbone_runs(space, wrap, focus):
    archs = space_archs(space)
    if not focus and archs[0].in_channels != 3:
        # A 12-channel stem reads the Focus output: without Focus neither plan nor wrap takes it.
        with pytest.raises(ValueError, match="Focus"):
            plan(archs[0], wrap, focus)
        return
    for n, arch in enumerate(archs):
        spp = n % 2 == 0
        recipe = backbone_recipe(arch, wrap, focus, spp)
        layout = plan(arch, wrap, focus, None, SIZE, spp)
        assert list(layout.op_counts) == traced_backbone_op_counts(recipe, SIZE), arch.key
        with torch.device("meta"):
            backbone = build_backbone(recipe)
            outputs = backbone(torch.empty(1, 3, SIZE, SIZE))
        assert layout.out_indices == backbone.out_indices
        assert [(out.shape[1], out.shape[2]) for out in outputs] == [(lv.channels, lv.size) for lv in layout.levels]
        assert layout.strides == tuple(SIZE // out.shape[2] for out in outputs)
        assert layout.strides == output_strides(arch, wrap, focus, layout.out_indices)


def test_the_table_view_is_the_searched_arch_with_the_stem_focus_runs():
    k1kx = load_space(resolve_space_path("k1kx")).initial
    view, size = plan(k1kx, "res", True, None, 640).table_arch, plan(k1kx, "res", True, None, 640).table_size
    assert view == k1kx and size == 320  # a 12-channel search is already the Focus view
    assert image_size(k1kx, 320, focus=True) == 640
    # The one Focus rule both ways: a 12-channel stem sees half the image, only behind Focus.
    assert searched_size(k1kx, 640, focus=True) == 320 and searched_size(k1kx, 640, focus=False) == 640
    assert all(searched_size(k1kx, image_size(k1kx, r, True), True) == r for r in (160, 224, 320))

    k1kxk1 = load_space(resolve_space_path("k1kxk1")).initial  # 3-channel stem at stride 2
    layout = plan(k1kxk1, "res", True, None, 224)
    assert layout.table_arch.stem.in_channels == 12 and layout.table_arch.stem.stride == 1
    assert layout.table_arch.blocks[1:] == k1kxk1.blocks[1:] and layout.table_size == 112
    assert image_size(k1kxk1, 224, focus=True) == 224 and searched_size(k1kxk1, 224, focus=True) == 224
    # The view's stem is the conv the Focus stem really runs; the rest is priced as searched.
    stem_op = conv_op_counts(layout.table_arch, layout.table_size)[0][0]
    assert stem_op in dict(layout.op_counts)
    assert stem_op.in_channels == 12 and stem_op.height == 112 and stem_op.stride == 1

    unfocused = plan(k1kxk1, "res", False, None, 224)
    assert unfocused.table_arch == k1kxk1 and unfocused.table_size == 224


@pytest.mark.parametrize("name", SHIPPED_MODELS)
def test_shipped_recipes_levels_match_their_heads(name):
    recipe = load_model_recipe(name)
    b = recipe.backbone
    layout = plan(b.arch, b.wrap, b.focus, b.out_indices, SIZE, b.spp)
    assert layout.strides == recipe.head.strides
    with torch.device("meta"):
        assert layout.channels == build_backbone(recipe).out_channels


def _with_neck(recipe: ModelRecipe, arch: Arch | None = None, **changes) -> ModelRecipe:
    neck = {k: changes.pop(k) for k in list(changes) if k in ("out_channels", "depth", "hidden_ratio")}
    n, h = recipe.neck, recipe.head
    backbone = recipe.backbone if arch is None else BackboneConfig(arch, *[getattr(recipe.backbone, f) for f in (
        "wrap", "out_indices", "focus", "spp", "act", "reparam")])
    return ModelRecipe(backbone,
                       NeckConfig(neck.get("out_channels", n.out_channels), neck.get("depth", n.depth),
                                  neck.get("hidden_ratio", n.hidden_ratio), n.act),
                       HeadConfig(changes.get("num_classes", h.num_classes), changes.get("reg_max", h.reg_max),
                                  h.strides), recipe.name)


def _closed_form(recipe: ModelRecipe, size: int) -> list:
    b = recipe.backbone
    layout = plan(b.arch, b.wrap, b.focus, b.out_indices, size, b.spp)
    total = Counter(dict(layout.op_counts))
    total.update(dict(neck_head_op_counts(recipe.neck, recipe.head, layout.channels,
                                          [level.size for level in layout.levels])))
    return sorted(total.items())


@pytest.mark.parametrize("name", SHIPPED_MODELS)
def test_plan_plus_neck_and_head_is_the_whole_fused_detector(name):
    recipe = load_model_recipe(name)
    assert _closed_form(recipe, SIZE) == detector_op_counts(recipe, SIZE)


def test_neck_and_head_follow_the_level_channels_and_the_recipe_settings():
    base = load_model_recipe("tinynas-n")
    k1kx = load_space(resolve_space_path("k1kx"))
    triples = set()
    for i, arch in enumerate(random_archs(k1kx, 4, seed=3)):
        variant = _with_neck(base, arch, depth=(0.5, 1.0, 1.5, 2.0)[i], hidden_ratio=(1.0, 0.75, 0.5, 1.25)[i],
                             num_classes=(80, 3, 1, 20)[i], reg_max=(16, 7, 16, 10)[i],
                             out_channels=((48, 96, 192), (64, 128, 256), (32, 64, 128), (40, 80, 160))[i])
        triples.add(plan(arch, "res", True, (2, 4, 5)).channels)
        for size in (256, 320):
            assert _closed_form(variant, size) == detector_op_counts(variant, size)
    assert len(triples) == 4  # four different level widths were exercised
    csp = _with_neck(load_model_recipe("damoyolo-m"), depth=1.0, hidden_ratio=0.5, num_classes=7)
    assert _closed_form(csp, 256) == detector_op_counts(csp, 256)


def test_a_wrap_refuses_what_the_plan_refuses():
    arch = load_space(resolve_space_path("k1kx")).initial
    with pytest.raises(ValueError, match="out of range"):
        plan(arch, "res", True, (2, 4, 6))
    with pytest.raises(ValueError, match="out of range"):
        plan(arch, "csp", True, (2, 4, 5))
    with pytest.raises(ValueError, match="unknown wrap"):
        plan(arch, "dense", True)
