"""RepConv: a k x k conv+BN and a 1x1 conv+BN summed at training time, one k x k conv after fuse.

Both branches are linear up to the shared activation, so their sum is itself a single k x k
convolution: the 1x1 kernel sits at the centre of a zero k x k kernel. There is no identity
branch, as in DAMO-YOLO's form (``RepVGGBlock`` adds one where the shape allows).

A unit trains in one of three forms (``REP_FORMS``), all of which fuse into the same deploy conv:

- ``branches``: each branch with its own BatchNorm, summed (RepVGG; the default);
- ``plain``: one k x k conv and its BatchNorm, the deploy structure itself. This is what
  RepOptimizer trains (Ding et al. 2022, "Re-parameterizing Your Optimizers rather than
  Architectures"; YOLOv6's ``repopt`` mode): the branches' effect moves into per-channel gradient
  multipliers (``train/repopt.py``), so the trained weights are the deployed ones, with ranges a
  quantizer can cover;
- ``scaled``: the branches without BatchNorm, each multiplied by a trainable per-output-channel
  factor, summed under one BatchNorm (RepOpt's CSLA block, YOLOv6's ``LinearAddBlock``). Training
  this form is RepOptimizer's hyper-search: the factors it learns give the multipliers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .activation import get_activation
from .point_conv import conv2d

REP_FORMS = ("branches", "plain", "scaled")
_TRAINING_PARTS = ("dense", "point", "identity", "norm", "dense_scale", "point_scale", "identity_scale")


def _fold_bn(weight: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernel and bias of ``bn(conv(x))`` for a bias-free conv with ``weight``."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return weight * scale.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


class RepConv(nn.Module):
    """k x k (odd k) and 1x1 branches summed, then the activation; see the module for the forms.

    ``fuse()`` replaces the branches with one biased k x k conv; it is idempotent.
    ``fused=True`` builds that deploy form directly, so fused state dicts load into it.
    """

    # Whether an identity branch joins where the shape allows (RepVGGBlock's).
    with_identity = False

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1,
                 groups: int = 1, act: str | None = "relu", fused: bool = False, form: str = "branches"):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"RepConv needs an odd kernel, got {kernel}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel, self.stride, self.groups = kernel, stride, groups
        self.has_identity = self.with_identity and in_channels == out_channels and stride == 1
        self.act = get_activation(act) if act is not None else nn.Identity()
        self.conv: nn.Conv2d | None = self._deploy_conv() if fused else None
        self.form = "fused" if fused else ""
        if not fused:
            self.set_form(form)

    def _branch(self, kernel: int, norm: bool = True) -> nn.Sequential:
        conv = conv2d(self.in_channels, self.out_channels, kernel, self.stride, kernel // 2, groups=self.groups,
                      bias=False)
        return nn.Sequential(conv, nn.BatchNorm2d(self.out_channels)) if norm else nn.Sequential(conv)

    def _deploy_conv(self) -> nn.Conv2d:
        return nn.Conv2d(self.in_channels, self.out_channels, self.kernel, self.stride,
                         self.kernel // 2, groups=self.groups, bias=True)

    def _scale(self) -> nn.Parameter:
        return nn.Parameter(torch.ones(self.out_channels))

    def set_form(self, form: str) -> "RepConv":
        """Rebuild the training branches in ``form``, freshly initialised (on this unit's device)."""
        if form not in REP_FORMS:
            raise ValueError(f"unknown RepConv form {form!r} (known: {', '.join(REP_FORMS)})")
        if self.conv is not None:
            raise ValueError("a fused RepConv has no training form")
        if form == self.form:
            return self
        like = next(self.parameters(), None)
        self._drop_training_parts()
        self.dense = self._branch(self.kernel, norm=form != "scaled")
        self.point = self._branch(1, norm=form == "branches") if form != "plain" else None
        self.identity = nn.BatchNorm2d(self.in_channels) if form == "branches" and self.has_identity else None
        self.norm = nn.BatchNorm2d(self.out_channels) if form == "scaled" else None
        if form == "scaled":
            self.dense_scale, self.point_scale = self._scale(), self._scale()
            self.identity_scale = self._scale() if self.has_identity else None
        self.form = form
        if like is not None:
            self.to(like)
        return self

    @property
    def is_fused(self) -> bool:
        return self.conv is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is not None:
            return self.act(self.conv(x))
        if self.form == "plain":
            return self.act(self.dense(x))
        if self.form == "scaled":
            out = self.dense(x) * self.dense_scale.view(1, -1, 1, 1) + self.point(x) * self.point_scale.view(1, -1, 1, 1)
            if self.identity_scale is not None:
                out = out + x * self.identity_scale.view(1, -1, 1, 1)
            return self.act(self.norm(out))
        out = self.dense(x) + self.point(x)
        if self.identity is not None:
            out = out + self.identity(x)
        return self.act(out)

    def identity_kernel(self, like: torch.Tensor) -> torch.Tensor:
        """The identity as a k x k kernel shaped like ``like``: a 1 at the centre, from each channel to
        itself (within its group)."""
        per_group = self.in_channels // self.groups
        eye = torch.zeros_like(like)
        channels = torch.arange(self.out_channels, device=like.device)
        eye[channels, channels % per_group, self.kernel // 2, self.kernel // 2] = 1.0
        return eye

    def pad_point(self, weight: torch.Tensor) -> torch.Tensor:
        """A 1x1 kernel placed at the centre of a zero k x k one."""
        pad = self.kernel // 2
        return F.pad(weight, [pad, pad, pad, pad])

    @torch.no_grad()
    def equivalent_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The single k x k kernel and bias equal to the training form in eval mode."""
        if self.form == "plain":
            return _fold_bn(self.dense[0].weight, self.dense[1])
        if self.form == "scaled":
            weight = (self.dense[0].weight * self.dense_scale.view(-1, 1, 1, 1)
                      + self.pad_point(self.point[0].weight) * self.point_scale.view(-1, 1, 1, 1))
            if self.identity_scale is not None:
                weight = weight + self.identity_kernel(weight) * self.identity_scale.view(-1, 1, 1, 1)
            return _fold_bn(weight, self.norm)
        w_dense, b_dense = _fold_bn(self.dense[0].weight, self.dense[1])
        w_point, b_point = _fold_bn(self.point[0].weight, self.point[1])
        weight, bias = w_dense + self.pad_point(w_point), b_dense + b_point
        if self.identity is not None:
            w_id, b_id = _fold_bn(self.identity_kernel(weight), self.identity)
            weight, bias = weight + w_id, bias + b_id
        return weight, bias

    @torch.no_grad()
    def fuse(self) -> "RepConv":
        if self.conv is not None:
            return self
        weight, bias = self.equivalent_kernel()
        conv = self._deploy_conv().to(weight)
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
        self.conv = conv
        self._drop_training_parts()
        self.form = "fused"
        return self

    def _drop_training_parts(self) -> None:
        for name in _TRAINING_PARTS:
            if hasattr(self, name):
                delattr(self, name)
        self.dense = self.point = self.identity = self.norm = None
        self.dense_scale = self.point_scale = self.identity_scale = None
