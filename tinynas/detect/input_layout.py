"""The memory layout a batch of images enters a detector in: channels-last (NHWC) on the CPU,
one rule for evaluation and prediction, so that the same batch gives the same scores in both,
and for training steps."""

from __future__ import annotations

import torch


def to_model_input(images: torch.Tensor, device: torch.device | str, non_blocking: bool = False) -> torch.Tensor:
    """``images [N, 3, H, W]`` on ``device``, channels-last (NHWC) on the CPU.

    oneDNN's NHWC convolutions take ~15% less CPU than NCHW for inference; every layer follows
    its input's layout, the weights keep theirs (checkpoints are unchanged), and the values differ
    from NCHW only by rounding.
    """
    device = torch.device(device)
    layout = torch.channels_last if device.type == "cpu" else torch.preserve_format
    return images.to(device, non_blocking=non_blocking, memory_format=layout)


def to_training_input(images: torch.Tensor, device: torch.device | str, non_blocking: bool = False) -> torch.Tensor:
    """``images [N, 3, H, W]`` on ``device`` for a training step: NHWC on the CPU, ~25% less CPU
    per step than NCHW.

    torch 2.13's CPU build corrupts the heap computing the NHWC weight gradient of a strided 1x1
    conv with few input channels; every such conv of a tinynas model is built as the stride-1
    conv of its subsampled input (``tinynas/nn/point_conv.py``), which has no such fault
    (``benchmarks/nhwc_weight_grad.py`` sweeps the conv shapes; ``tests/test_train_layout.py``
    runs a step through the faulting shape).
    """
    return to_model_input(images, device, non_blocking)
