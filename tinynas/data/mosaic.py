"""Mosaic (four images around a random centre, then a random affine) and mixup (a blend of two)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .sample import Sample
from .transforms import PAD_VALUE, AffineRange, random_affine, resize_to_fit


def _valid(boxes: np.ndarray) -> np.ndarray:
    return ((boxes[:, 2] - boxes[:, 0]) > 0) & ((boxes[:, 3] - boxes[:, 1]) > 0)


def mosaic_canvas(samples: Sequence[Sample], rng: np.random.Generator, size: int) -> Sample:
    """Four samples, each scaled so its long side is ``size``, meeting at a random centre of a
    ``2*size`` square canvas: top-left, top-right, bottom-left, bottom-right. Boxes are cut to
    the part of their tile that is visible."""
    if len(samples) != 4:
        raise ValueError(f"mosaic needs 4 samples, got {len(samples)}")
    side = 2 * size
    canvas = np.full((side, side, 3), PAD_VALUE, dtype=np.uint8)
    # The centre stays in the middle half so every tile shows a real part of its image.
    xc = int(rng.uniform(0.5 * size, 1.5 * size))
    yc = int(rng.uniform(0.5 * size, 1.5 * size))
    boxes, labels, ignore = [], [], []
    for k, sample in enumerate(samples):
        tile = resize_to_fit(sample, size)
        h, w = tile.height, tile.width
        x0 = xc - w if k in (0, 2) else xc
        y0 = yc - h if k in (0, 1) else yc
        vx0, vy0 = max(x0, 0), max(y0, 0)
        vx1, vy1 = min(x0 + w, side), min(y0 + h, side)
        canvas[vy0:vy1, vx0:vx1] = tile.image[vy0 - y0:vy1 - y0, vx0 - x0:vx1 - x0]
        offset = np.array([x0, y0, x0, y0], dtype=np.float32)
        for source, target, keep_labels in ((tile.boxes, boxes, True), (tile.ignore, ignore, False)):
            moved = source + offset
            moved[:, [0, 2]] = moved[:, [0, 2]].clip(vx0, vx1)
            moved[:, [1, 3]] = moved[:, [1, 3]].clip(vy0, vy1)
            keep = _valid(moved)
            target.append(moved[keep])
            if keep_labels:
                labels.append(tile.labels[keep])
    return Sample(
        image=canvas,
        boxes=np.concatenate(boxes).astype(np.float32),
        labels=np.concatenate(labels).astype(np.int64),
        ignore=np.concatenate(ignore).astype(np.float32),
        image_id=samples[0].image_id,
    )


def mosaic(samples: Sequence[Sample], rng: np.random.Generator, size: int,
           ranges: AffineRange = AffineRange(), min_size: float = 2.0) -> Sample:
    """A ``size x size`` mosaic: the canvas of :func:`mosaic_canvas` through a random affine
    whose zoom 1 shows the canvas's central ``size x size`` window."""
    canvas = mosaic_canvas(samples, rng, size)
    return random_affine(canvas, rng, (size, size), ranges, min_size=min_size)


def mixup(first: Sample, second: Sample, rng: np.random.Generator, alpha: float = 32.0) -> Sample:
    """Blend two same-size samples with a weight drawn from Beta(alpha, alpha) (close to 0.5 for
    the default, so both images stay visible) and keep the boxes of both."""
    if first.image.shape != second.image.shape:
        raise ValueError(f"mixup needs equal image shapes, got {first.image.shape} and {second.image.shape}")
    weight = rng.beta(alpha, alpha)
    image = first.image.astype(np.float32) * weight + second.image.astype(np.float32) * (1 - weight)
    return first.with_(
        image=np.clip(np.rint(image), 0, 255).astype(np.uint8),
        boxes=np.concatenate([first.boxes, second.boxes]).astype(np.float32),
        labels=np.concatenate([first.labels, second.labels]).astype(np.int64),
        ignore=np.concatenate([first.ignore, second.ignore]).astype(np.float32),
    )

