"""RepOptimizer: RepVGG's multi-branch training moved into the optimizer (Ding et al. 2022).

A RepVGG unit trained as the scaled form (``nn/repconv.py``: k x k conv x ``d``, 1x1 conv x
``p`` and the input x ``i``, per output channel, under one BatchNorm) is, by linearity, a single
k x k kernel ``W = d W_k + p pad(W_1) + i I``. Under SGD the k x k weights move by ``-lr d g`` and
the 1x1 weights by ``-lr p g`` (``g`` the gradient with respect to ``W``), so ``W`` moves by
``-lr (d^2 + p^2 [centre]) g``; the identity's trainable factor adds 1 on the centre of each
channel's own kernel. Training the plain form (the deploy conv and its BatchNorm) with the
gradient multiplied by

    M = d^2 everywhere, + p^2 at the centre, + 1 at the centre of each channel to itself

gives the same trajectory with d and p held constant (momentum and Nesterov included, since they
are linear; weight decay differs, as the paper accepts).

Adam divides each weight's step by its own gradient scale, so a constant gradient multiplier does
nothing there; but the branches' Adam steps are each the plain kernel's Adam direction (per
element, the same gradient history up to a constant factor), so ``W`` moves by ``-lr (d + p
[centre] + 1 [identity centre])`` times that direction (with |d|, |p|: a branch's Adam direction
carries its factor's sign): under AdamW the *update* is multiplied by

    U = |d| everywhere, + |p| at the centre, + 1 at the centre of each channel to itself

(equal up to Adam's epsilon; the decoupled weight decay is scaled with the step). This extends
the paper, whose optimizer is SGD, to the AdamW that short runs on small data train with here.

The factors come from a hyper-search: a short training of the scaled form with trainable factors
(``train.rep_form=scaled``), whose checkpoint ``train.repopt_scales`` names; without one every
factor is 1. The weights start where the scaled form would start, ``d W_k + p pad(W_1) + i I``
from fresh initialisations. The deployed weights are the trained ones, which is the point for
int8 (YOLOv6 v3's report): no fusion widens their range after training.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import torch
from torch import nn

from ..atomic import atomic_write_bytes
from ..errors import UserError
from ..nn.point_conv import conv2d
from ..nn.rep_forms import rep_units


@dataclass(frozen=True)
class UnitScales:
    """One unit's per-output-channel factors; ``identity`` is None where the unit has no identity."""

    dense: torch.Tensor
    point: torch.Tensor
    identity: torch.Tensor | None


Scales = dict[str, UnitScales]


def constant_scales(model: nn.Module) -> Scales:
    """Every factor 1: RepOptimizer without a hyper-search."""
    scales = {}
    for name, unit in rep_units(model):
        ones = torch.ones(unit.out_channels)
        scales[name] = UnitScales(ones, ones, ones if unit.has_identity else None)
    return scales


def scales_of(model: nn.Module) -> Scales:
    """The trained factors of a model in the scaled form (a hyper-search's result)."""
    scales = {}
    for name, unit in rep_units(model):
        if unit.form != "scaled":
            raise ValueError(f"{name} is in the {unit.form} form, not the scaled one")
        identity = unit.identity_scale.detach().cpu().clone() if unit.identity_scale is not None else None
        scales[name] = UnitScales(unit.dense_scale.detach().cpu().clone(), unit.point_scale.detach().cpu().clone(),
                                  identity)
    return scales


def check_scales(model: nn.Module, scales: Scales, source: str, field: str) -> None:
    """A ``UserError`` unless ``scales`` has exactly one entry of the right width per unit of ``model``."""
    units = dict(rep_units(model))
    missing = [name for name in units if name not in scales]
    extra = [name for name in scales if name not in units]
    if missing or extra:
        first = f"no factors for {missing[0]}" if missing else f"factors for {extra[0]}, which this model lacks"
        raise UserError(source, field, f"the hyper-search's model is not this one ({first}; "
                                       f"{len(missing)} units unmatched, {len(extra)} extra)")
    for name, unit in units.items():
        s = scales[name]
        widths = {len(s.dense), len(s.point)} | ({len(s.identity)} if s.identity is not None else set())
        if widths != {unit.out_channels} or (s.identity is not None) != unit.has_identity:
            raise UserError(source, field, f"the factors of {name} do not fit it ({unit.out_channels} channels, "
                                           f"{'with' if unit.has_identity else 'without'} an identity)")


def gradient_masks(model: nn.Module, scales: Scales, optimizer: str = "sgd") -> dict[nn.Parameter, torch.Tensor]:
    """Each plain unit's k x k weight and its multiplier: SGD's gradient multiplier M, or AdamW's
    update multiplier U (the module docstring's)."""
    power = 2 if optimizer == "sgd" else 1
    masks = {}
    for name, unit in rep_units(model):
        if unit.form != "plain":
            raise ValueError(f"{name} is in the {unit.form} form; RepOptimizer trains the plain one")
        weight = unit.dense[0].weight
        s = scales[name]
        # |d|, |p| under AdamW: a branch's Adam direction is its gradient's sign times the kernel's.
        dense = s.dense.to(weight).abs().view(-1, 1, 1, 1)
        point = s.point.to(weight).abs().view(-1, 1, 1, 1)
        mask = (dense ** power).expand_as(weight) + unit.pad_point(torch.ones_like(weight[:, :, :1, :1]) * point ** power)
        if s.identity is not None:
            mask = mask + unit.identity_kernel(weight)
        masks[weight] = mask.contiguous()
    return masks


@torch.no_grad()
def reinitialize(model: nn.Module, scales: Scales) -> None:
    """Start each plain unit's kernel where the scaled form starts: ``d W_k + p pad(W_1) + i I``."""
    for name, unit in rep_units(model):
        weight = unit.dense[0].weight
        s = scales[name]
        point = conv2d(unit.in_channels, unit.out_channels, 1, unit.stride, 0, groups=unit.groups,
                       bias=False).weight.to(weight)
        start = weight * s.dense.to(weight).view(-1, 1, 1, 1) + unit.pad_point(point) * s.point.to(weight).view(-1, 1, 1, 1)
        if s.identity is not None:
            start = start + unit.identity_kernel(weight) * s.identity.to(weight).view(-1, 1, 1, 1)
        weight.copy_(start)


class _Multiplied:
    """An optimizer whose step goes through ``_multiplied_step`` (the closure, if any, first)."""

    def __init__(self, params, grad_masks: dict[nn.Parameter, torch.Tensor], **options):
        super().__init__(params, **options)
        self.grad_masks = grad_masks

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._multiplied_step()
        return loss


class RepOptSGD(_Multiplied, torch.optim.SGD):
    """SGD whose step first multiplies each masked parameter's gradient by its mask."""

    def _multiplied_step(self) -> None:
        pairs = [(p.grad, m) for p, m in self.grad_masks.items() if p.grad is not None]
        if pairs:
            torch._foreach_mul_([g for g, _ in pairs], [m for _, m in pairs])
        torch.optim.SGD.step(self)


class RepOptAdamW(_Multiplied, torch.optim.AdamW):
    """AdamW whose step, for each masked parameter, is multiplied by its mask."""

    def _multiplied_step(self) -> None:
        moved = [(p, m, p.detach().clone()) for p, m in self.grad_masks.items() if p.grad is not None]
        torch.optim.AdamW.step(self)
        for param, mask, before in moved:
            param.copy_(before.add_((param - before).mul_(mask)))


def save_scales(path: str | os.PathLike, scales: Scales) -> None:
    """Write ``scales`` atomically as plain tensors (what a resumed run reads back)."""
    doc = {name: {"dense": s.dense, "point": s.point, **({"identity": s.identity} if s.identity is not None else {})}
           for name, s in scales.items()}
    buffer = io.BytesIO()
    torch.save(doc, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_scales_file(path: str | os.PathLike) -> Scales:
    """What ``save_scales`` wrote; a damaged file is a ``UserError`` naming it."""
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
        return {name: UnitScales(d["dense"], d["point"], d.get("identity")) for name, d in doc.items()}
    except Exception as err:  # noqa: BLE001 - a damaged pickle raises almost any type
        raise UserError(str(path), "", f"not a readable RepOptimizer scales file ({err.__class__.__name__})") from None


def scales_from_checkpoint(path: str, model: nn.Module, source: str, field: str) -> Scales:
    """The factors a hyper-search checkpoint learned, checked against ``model``."""
    from ..checkpoint import load_checkpoint
    try:
        ckpt = load_checkpoint(path)
    except UserError as err:
        raise UserError(source, field, f"{path}: {err.reason}") from None
    if ckpt.rep_form != "scaled":
        raise UserError(source, field, f"{path} was trained in the {ckpt.rep_form} form; the factors come "
                                       f"from a hyper-search run (train.rep_form=scaled)")
    scales = scales_of(ckpt.build())
    check_scales(model, scales, source, field)
    return scales
