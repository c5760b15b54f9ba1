"""RepConv's training forms and RepOptimizer: every form fuses to its own output, the plain form
trained with the gradient multipliers follows the scaled form exactly, and a run trains, saves and
resumes in it."""

import pytest
import torch
from torch import nn

from tinynas import UserError
from tinynas.checkpoint import load_checkpoint, save_checkpoint
from tinynas.cli import main
from tinynas.detect.detector import Detector
from tinynas.nn.rep_forms import rep_form_of, rep_units, set_rep_form
from tinynas.nn.repconv import REP_FORMS, RepConv
from tinynas.nn.repvgg import RepVGGBlock
from tinynas.train.recipe import parse_train_recipe
from tinynas.train.repopt import (RepOptAdamW, RepOptSGD, UnitScales, gradient_masks, load_scales_file,
                                  reinitialize, scales_of)
from tinynas.train.trainer import train

from train_helpers import synthetic, tiny_recipe


def _randomize(module: nn.Module, generator: torch.Generator) -> None:
    """BatchNorm statistics and per-channel factors away from their initial values, so a fold that
    drops one of them shows."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=generator) * 2 - 1)
                m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=generator) - 0.5)
        for name, p in module.named_parameters():
            if name.endswith("_scale"):
                p.copy_(torch.rand(p.shape, generator=generator) * 2 - 0.5)


@pytest.mark.parametrize("form", REP_FORMS)
@pytest.mark.parametrize("cls", [RepConv, RepVGGBlock])
@pytest.mark.parametrize("channels,stride,groups", [((8, 8), 1, 1), ((8, 16), 2, 1), ((8, 8), 1, 2)])
def test_every_form_fuses_into_one_conv_with_the_same_output(form, cls, channels, stride, groups):
    generator = torch.Generator().manual_seed(1)
    unit = cls(*channels, 3, stride, groups=groups, form=form)
    _randomize(unit, generator)
    unit.eval()
    x = torch.randn(2, channels[0], 9, 9, generator=generator)
    before = unit(x)
    unit.fuse()
    assert unit.is_fused and unit.form == "fused" and unit.dense is None
    torch.testing.assert_close(unit(x), before, atol=2e-5, rtol=1e-5)


def test_the_identity_branch_is_in_the_forms_that_can_hold_it():
    block = RepVGGBlock(8, 8, form="scaled")
    assert block.has_identity and block.identity_scale is not None and block.identity is None
    block.set_form("branches")
    assert isinstance(block.identity, nn.BatchNorm2d) and block.identity_scale is None
    block.set_form("plain")
    assert block.identity is None and block.point is None
    assert not RepConv(8, 8).has_identity and not RepVGGBlock(8, 8, stride=2).has_identity


def test_the_gradient_multiplier_is_the_papers():
    """d^2 everywhere, + p^2 at the centre, + 1 at the centre of a channel's kernel to itself."""
    unit = RepVGGBlock(2, 2, form="plain")
    model = nn.Sequential(unit)
    scales = {"0": UnitScales(torch.tensor([2.0, 1.0]), torch.tensor([3.0, 0.5]), torch.tensor([1.0, 1.0]))}
    mask = gradient_masks(model, scales)[unit.dense[0].weight]
    assert mask[0, 1, 0, 0] == 4.0 and mask[0, 1, 1, 1] == 13.0 and mask[0, 0, 1, 1] == 14.0
    assert mask[1, 0, 2, 2] == 1.0 and mask[1, 0, 1, 1] == 1.25 and mask[1, 1, 1, 1] == 2.25
    # AdamW's update multiplier: |d|, + |p| at the centre, + 1 on the identity's centre.
    scales["0"] = UnitScales(torch.tensor([2.0, -1.0]), torch.tensor([3.0, 0.5]), torch.tensor([1.0, 1.0]))
    update = gradient_masks(model, scales, "adamw")[unit.dense[0].weight]
    assert update[0, 1, 0, 0] == 2.0 and update[0, 1, 1, 1] == 5.0 and update[0, 0, 1, 1] == 6.0
    assert update[1, 0, 2, 2] == 1.0 and update[1, 0, 1, 1] == 1.5 and update[1, 1, 1, 1] == 2.5


def test_reinitialize_starts_where_the_scaled_form_starts():
    torch.manual_seed(0)
    unit = RepVGGBlock(4, 4, form="plain")
    before = unit.dense[0].weight.detach().clone()
    ones = torch.ones(4)
    reinitialize(nn.Sequential(unit), {"0": UnitScales(2 * ones, 0 * ones, 0.5 * ones)})
    after = unit.dense[0].weight.detach()
    expected = 2 * before
    expected[range(4), range(4), 1, 1] += 0.5
    torch.testing.assert_close(after, expected)


def _pre_norm_kernel(unit: RepConv) -> torch.Tensor:
    """The scaled unit's single kernel before its BatchNorm."""
    w = unit.dense[0].weight * unit.dense_scale.view(-1, 1, 1, 1)
    w = w + unit.pad_point(unit.point[0].weight) * unit.point_scale.view(-1, 1, 1, 1)
    if unit.identity_scale is not None:
        w = w + unit.identity_kernel(w) * unit.identity_scale.view(-1, 1, 1, 1)
    return w


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_repopt_on_the_plain_form_follows_the_scaled_form(optimizer):
    """The paper's equivalence: the scaled form with its k x k and 1x1 factors held constant (the
    identity's trainable, as in YOLOv6) under Nesterov SGD, and the plain form under RepOptSGD with
    the gradient multipliers, stay one network step after step (no weight decay, which the two forms
    apply differently); and its AdamW counterpart with the update multipliers."""
    generator = torch.Generator().manual_seed(3)
    scaled = nn.Sequential(RepVGGBlock(6, 6, form="scaled"), RepConv(6, 8, stride=2, form="scaled"))
    _randomize(scaled, generator)
    plain = nn.Sequential(RepVGGBlock(6, 6, form="plain"), RepConv(6, 8, stride=2, form="plain"))
    with torch.no_grad():
        for (_, s), (_, p) in zip(rep_units(scaled), rep_units(plain)):
            p.dense[0].weight.copy_(_pre_norm_kernel(s))
            p.dense[1].load_state_dict(s.norm.state_dict())
    scales = scales_of(scaled)
    for _, unit in rep_units(scaled):
        unit.dense_scale.requires_grad_(False)
        unit.point_scale.requires_grad_(False)
    trained = [p for p in scaled.parameters() if p.requires_grad]
    # float32 sums taken in another order; AdamW also differs by its epsilon, seen through the factors
    tolerance = 1e-6 if optimizer == "sgd" else 1e-4
    if optimizer == "sgd":
        sgd = dict(lr=0.05, momentum=0.9, nesterov=True)
        reference = torch.optim.SGD(trained, **sgd)
        repopt = RepOptSGD(list(plain.parameters()), gradient_masks(plain, scales, "sgd"), **sgd)
    else:
        adamw = dict(lr=0.01, betas=(0.9, 0.999), weight_decay=0.0)
        reference = torch.optim.AdamW(trained, **adamw)
        repopt = RepOptAdamW(list(plain.parameters()), gradient_masks(plain, scales, "adamw"), **adamw)
    target = torch.randn(4, 8, 5, 5, generator=generator)
    for _ in range(6):
        x = torch.randn(4, 6, 9, 9, generator=generator)
        losses = []
        for model, optimizer in ((scaled, reference), (plain, repopt)):
            optimizer.zero_grad()
            loss = ((model(x) - target) ** 2).mean()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        assert losses[0] == pytest.approx(losses[1], rel=tolerance)
    for (_, s), (_, p) in zip(rep_units(scaled), rep_units(plain)):
        torch.testing.assert_close(p.dense[0].weight, _pre_norm_kernel(s).detach(), atol=tolerance, rtol=tolerance)
    # The multipliers matter: plain SGD on the plain form leaves the path at once.
    assert gradient_masks(plain, scales)[rep_units(plain)[0][1].dense[0].weight].std() > 0


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic(tmp_path_factory.mktemp("repopt"), images=16, val_images=4, size=64, seed=5)


def test_a_checkpoint_rebuilds_the_form_its_weights_were_trained_in(data, tmp_path):
    doc = tiny_recipe(data, tmp_path / "unused", 64, epochs=1)
    model = Detector(parse_train_recipe(doc).model)
    set_rep_form(model, "scaled")
    _randomize(model, torch.Generator().manual_seed(2))
    model.eval()
    x = torch.rand(1, 3, 64, 64)
    save_checkpoint(tmp_path / "scaled.pt", model, [f"c{i}" for i in range(model.num_classes)])
    ckpt = load_checkpoint(tmp_path / "scaled.pt")
    assert ckpt.rep_form == "scaled"
    rebuilt = ckpt.build()
    assert rep_form_of(rebuilt) == "scaled"
    torch.testing.assert_close(rebuilt(x)[0], model(x)[0])


def test_a_hyper_search_then_repopt_trains_resumes_and_exports(data, tmp_path):
    hs = tiny_recipe(data, tmp_path / "hs", 64, epochs=1, batch_size=8, rep_form="scaled")
    train(parse_train_recipe(hs), progress=False)
    searched = load_checkpoint(tmp_path / "hs" / "last.pt")
    assert searched.rep_form == "scaled"
    factors = scales_of(searched.build())
    assert any((s.dense - 1).abs().max() > 0 for s in factors.values())  # the factors trained

    def repopt(out, **extra):
        return parse_train_recipe(tiny_recipe(data, out, 64, epochs=2, batch_size=8, rep_form="plain", optimizer="adamw",
                                              repopt_scales=str(tmp_path / "hs" / "last.pt"), **extra))

    train(repopt(tmp_path / "whole"), progress=False)
    train(repopt(tmp_path / "parts"), stop_after=1, progress=False)
    kept = load_scales_file(tmp_path / "parts" / "repopt_scales.pt")
    assert kept.keys() == factors.keys()
    torch.testing.assert_close(kept[next(iter(kept))].point, factors[next(iter(factors))].point)
    train(repopt(tmp_path / "parts"), resume=True, progress=False)
    whole, parts = load_checkpoint(tmp_path / "whole" / "last.pt"), load_checkpoint(tmp_path / "parts" / "last.pt")
    assert whole.rep_form == parts.rep_form == "plain"
    for key, value in whole.state_dict.items():
        torch.testing.assert_close(parts.state_dict[key], value, msg=key)
    out = tmp_path / "model.onnx"
    assert main(["export", "--weights", str(tmp_path / "whole" / "last.pt"), "--out", str(out), "--check"]) == 0
    assert out.stat().st_size > 0


def test_repopt_settings_that_disagree_are_refused(data, tmp_path):
    with pytest.raises(UserError, match="only train.rep_form=plain"):
        parse_train_recipe(tiny_recipe(data, tmp_path, 64, epochs=1, repopt_scales="x.pt"))
    branches = tmp_path / "branches"
    train(parse_train_recipe(tiny_recipe(data, branches, 64, epochs=1, batch_size=8)), progress=False)
    with pytest.raises(UserError, match="hyper-search run"):
        train(parse_train_recipe(tiny_recipe(data, tmp_path / "r", 64, epochs=1, rep_form="plain",
                                             repopt_scales=str(branches / "last.pt"))), progress=False)
    with pytest.raises(UserError, match="in the branches form, this run trains them in the plain form"):
        train(parse_train_recipe(tiny_recipe(data, tmp_path / "i", 64, epochs=1, rep_form="plain",
                                             init=str(branches / "last.pt"))), progress=False)
