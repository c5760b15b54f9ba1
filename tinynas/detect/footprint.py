"""What a detector needs in memory for one pass, estimated on torch's meta device.

The pre-flight check of ``tinynas.memory`` for detectors: ``predict``, ``export``, evaluation
and training call ``check_detector_fits`` before they build the model, so a size or batch that
cannot fit is a one-line error naming it instead of an out-of-memory failure.
"""

from __future__ import annotations

import weakref
from functools import lru_cache

from ..memory import FLOAT32, check_fits

# Training keeps, next to the weights and their gradients, the optimiser's state (AdamW: two
# moments; SGD: one) and the EMA copy: three more weight-sized tensors at most.
TRAINING_STATE_COPIES = 3


def _live_tracker():
    """A dispatch mode that keeps the running total and the peak of the bytes that every
    op's outputs hold while they are alive, which is what an allocator would see."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class LiveBytes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.live = self.peak = 0

        def _free(self, count: int) -> None:
            self.live -= count

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            seen = set()
            for tensor in tree_flatten(out)[0]:
                # A view shares its base's storage, which is counted with the base.
                if isinstance(tensor, torch.Tensor) and not tensor._is_view() and id(tensor) not in seen:
                    seen.add(id(tensor))
                    count = tensor.untyped_storage().nbytes()
                    self.live += count
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(tensor, self._free, count)
            return out

    return LiveBytes()


@lru_cache(maxsize=64)
def detector_bytes(recipe, size: int, batch: int = 1, training: bool = False, fused: bool = False,
                   amp: bool = False) -> int:
    """Bytes a detector built from ``recipe`` needs for one pass on ``batch`` images of ``size``.

    The model is built on torch's ``meta`` device, so nothing is allocated: weights and
    buffers are summed, and the forward pass (plus backward when ``training``) is replayed
    while a dispatch mode tracks the bytes its tensors hold alive. Training adds the
    optimiser state and EMA copy; ``amp`` halves activations (float16 under autocast).
    """
    import torch

    from .detector import build_detector

    with torch.device("meta"):
        model = build_detector(recipe)
    if fused:
        model.fuse()
    model.train(training)
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    weights = params + sum(b.numel() * b.element_size() for b in model.buffers())
    images = torch.zeros(batch, 3, size, size, device="meta")
    tracker = _live_tracker()
    with torch.set_grad_enabled(training), tracker:
        scores, boxes = model(images)
        if training:
            (scores.sum() + boxes.sum()).backward()
        del scores, boxes
    activations = tracker.peak * (0.5 if amp else 1.0)
    state = TRAINING_STATE_COPIES * params if training else 0
    return int(weights + images.numel() * FLOAT32 + activations + state)


def check_detector_fits(recipe, size: int, batch: int = 1, training: bool = False, *, fused: bool = False,
                        amp: bool = False, device: object = None, source: str = "", field: str = "size",
                        hint: str = "lower the batch or the size") -> int:
    """Refuse (``UserError``) a detector pass that would not fit on ``device``; return the estimate.

    Call it before building the model: training with ``training=True`` and the per-device
    batch, inference (predict, evaluation, export) with ``training=False``.
    """
    needed = detector_bytes(recipe, size, batch, training, fused, amp)
    what = f"{'training' if training else 'a forward pass'} at batch {batch}, {size}x{size}"
    check_fits(needed, source, field, what, hint, device)
    return needed
