"""The memory layout a batch of images enters a detector in for inference: one rule for
evaluation and prediction, so that the same batch gives the same scores in both. Training feeds
NCHW (see the trainer: an NHWC weight gradient of torch 2.13's CPU build corrupts the heap)."""

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
    """``images [N, 3, H, W]`` on ``device`` for a training step: NCHW.

    NHWC would take ~25% less CPU per step, but in torch 2.13's CPU build the weight gradient of
    a 1x1 stride-2 conv with fewer than 16 input channels at 160x160 and beyond corrupts the heap
    in NHWC (a RepConv's point branch in a searched backbone with btn 8 behind the Focus stem of
    a 320 image; tests/test_train_layout.py runs that step), and no narrower way round it is
    proven safe for every op a search space can produce.
    """
    return images.to(device, non_blocking=non_blocking, memory_format=torch.contiguous_format)
