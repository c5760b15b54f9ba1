"""One training example on its way through the augmentations.

Pixels stay ``uint8`` RGB ``[H, W, 3]`` until the very end so that every transform works
on what Pillow can read and write; boxes are ``xyxy`` float32 in pixels of that image.
Crowd boxes travel in ``ignore`` through the same geometry, so a trainer can still mask
the regions they cover after mosaic, affine and flip have moved them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

EMPTY_BOXES = np.zeros((0, 4), dtype=np.float32)
EMPTY_LABELS = np.zeros((0,), dtype=np.int64)


# eq=False: numpy arrays have no single truth value, and identity is what transforms compare.
@dataclass(frozen=True, eq=False)
class Sample:
    image: np.ndarray  # uint8 [H, W, 3], RGB
    boxes: np.ndarray  # float32 [N, 4], xyxy pixels
    labels: np.ndarray  # int64 [N], contiguous 0..K-1
    ignore: np.ndarray = field(default_factory=lambda: EMPTY_BOXES.copy())  # float32 [M, 4], crowd regions, xyxy pixels
    image_id: int = -1

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    def with_(self, **changes) -> "Sample":
        return replace(self, **changes)
