"""A fixed small network and batch on which each zero-cost proxy is pinned against the value its
authors' code gives (tests/test_proxies.py). The network is a tinynas backbone (two k1kx stages
of the searched kind, BN and ReLU as trained) with a classifier on its last stage, since the
authors define the data proxies with a classification loss."""

from __future__ import annotations

import torch
from torch import nn

from tinynas.arch import arch_from_dicts
from tinynas.nn.backbone import build_backbone

ARCH = [
    {"class": "ConvKXBNRELU", "in": 3, "out": 8, "s": 2, "k": 3},
    {"class": "SuperResK1KX", "in": 8, "out": 16, "s": 2, "k": 3, "L": 1, "btn": 8},
    {"class": "SuperResK1KX", "in": 16, "out": 24, "s": 2, "k": 5, "L": 2, "btn": 16},
]
NUM_CLASSES = 5
BATCH, SIZE = 6, 32


class Classifier(nn.Module):
    """The backbone's last stage, globally pooled, to ``NUM_CLASSES`` logits."""

    def __init__(self):
        super().__init__()
        self.backbone = build_backbone(arch_from_dicts(ARCH), out_stages=[-1])
        self.fc = nn.Linear(ARCH[-1]["out"], NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feature = self.backbone(x)[-1]
        return self.fc(feature.mean(dim=(2, 3)))


def reference_classifier(seed: int = 0) -> Classifier:
    """The network with torch's default initialisation drawn from ``seed``; BN statistics moved
    off their defaults so that a proxy reading them sees non-trivial values."""
    torch.manual_seed(seed)
    net = Classifier()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return net


def reference_batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in [0, 1] and class labels, drawn from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(BATCH, 3, SIZE, SIZE, generator=g), torch.randint(0, NUM_CLASSES, (BATCH,), generator=g)
