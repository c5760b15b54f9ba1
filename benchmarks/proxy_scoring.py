"""Every proxy of the proxy study on one candidate backbone, wrapped as a detector (the model
recipe's wrap, neck and head, as it will be trained).

- ``mae``: the closed-form MAE score of the backbone (the search's objective, stage weights
  0,0,1,1,6); ``entropy``: its forward-pass twin (batch 8 at the searched resolution);
- ``zen``: Zen-NAS on the wrapped backbone's deepest map; ``synflow``: on the whole detector's raw
  outputs; ``naswot``: the ReLUs of the whole detector on one training batch; ``snip`` and
  ``grad_norm``: the detection loss (the trainer's, DAMO-YOLO's defaults) on one training batch;
- ``params`` and ``gflops``: the fused detector's, at the training size;
- ``predicted_ms``: the latency table's whole-detector prediction.

Data-free proxies depend on the architecture alone; ``naswot``, ``snip`` and ``grad_norm`` also
on the dataset's batch (the first ``batch`` training images, letterboxed, no augmentation).
"""

from __future__ import annotations

import torch
from torch import nn

from tinynas.arch import Arch
from tinynas.detect.costs import recipe_costs
from tinynas.detect.detector import Detector
from tinynas.detect.input_layout import to_training_input
from tinynas.scores import create_scorer
from tinynas.scores.proxies import grad_norm, naswot, snip, synflow, zen_score
from tinynas.train.composed_loss import ComposedDetectionLoss
from tinynas.train.recipe import TrainConfig

DATA_FREE = ("mae", "entropy", "zen", "synflow", "params", "gflops")
WITH_DATA = ("naswot", "snip", "grad_norm")
STAGE_WEIGHTS = (0.0, 0.0, 1.0, 1.0, 6.0)


class RawDetector(nn.Module):
    """The detector's raw head outputs (class logits, box logits) with its anchors, as the loss reads them."""

    def __init__(self, detector: Detector):
        super().__init__()
        self.detector = detector

    def forward(self, images: torch.Tensor):
        return self.detector.forward_raw(images)


def detector_of(recipe, arch: Arch, seed: int = 0) -> RawDetector:
    torch.manual_seed(seed)  # the detector's own initialisation, as a training would draw it
    return RawDetector(Detector(_with_arch(recipe, arch)))


def _with_arch(recipe, arch: Arch):
    from dataclasses import replace

    return replace(recipe, backbone=replace(recipe.backbone, arch=arch))


def detection_loss(net: RawDetector):
    options = TrainConfig().loss_options(net.detector.head.reg_max)
    loss = ComposedDetectionLoss(net.detector.num_classes, net.detector.head.reg_max, options)

    def compute(outputs, targets) -> torch.Tensor:
        cls_logits, reg_logits, points, strides = outputs
        return loss(cls_logits.float(), reg_logits.float(), points, strides, targets)["loss"]

    return compute


def proxy_batch(coco, size: int, batch: int) -> tuple[torch.Tensor, list[dict]]:
    """The first ``batch`` training images, letterboxed to ``size``, and their targets."""
    from tinynas.data.collate import collate_detection
    from tinynas.data.pipeline import DetectionDataset

    dataset = DetectionDataset(coco, size, train=False)
    images, targets = collate_detection([dataset[i] for i in range(min(batch, len(dataset)))])
    return to_training_input(images, "cpu").contiguous(), targets


def data_free_proxies(recipe, arch: Arch, size: int, searched_size: int) -> dict[str, float]:
    net = detector_of(recipe, arch)
    total = recipe_costs(_with_arch(recipe, arch), size, fused=True)[-1]
    return {
        "mae": float(create_scorer("madnas", weights=STAGE_WEIGHTS)(arch)),
        "entropy": float(create_scorer("entropy", weights=STAGE_WEIGHTS, resolution=searched_size, batch=8)(arch)),
        "zen": zen_score(net, lambda m, x: m.detector.backbone(x)[-1], batch=8, resolution=size, seed=0),
        "synflow": _log(synflow(net, (3, size, size))),
        "params": total.params / 1e6, "gflops": total.flops / 1e9,
    }


def data_proxies(recipe, arch: Arch, images: torch.Tensor, targets: list[dict]) -> dict[str, float]:
    net = detector_of(recipe, arch)
    loss = detection_loss(net)
    return {"naswot": naswot(net, images), "snip": snip(net, images, targets, loss),
            "grad_norm": grad_norm(net, images, targets, loss)}


def _log(value: float) -> float:
    """SynFlow grows as a product over layers (1e30 and more on a detector): its log ranks the same."""
    import math

    return math.log(value) if value > 0 else float("-inf")
