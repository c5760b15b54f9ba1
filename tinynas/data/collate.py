"""Batching: stacking images, padding targets, and an epoch-seeded sampler and loader.

The sampler's order depends only on ``(seed, epoch)``, and each item's augmentation only on
``(seed, epoch, index)`` (see ``pipeline.py``), so epoch ``e`` of a resumed run sees exactly
the batches an uninterrupted run saw.
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Sampler


def collate_detection(batch: Sequence[tuple[torch.Tensor, dict]]) -> tuple[torch.Tensor, list[dict]]:
    """``[(image, target), ...]`` -> ``(images [B, 3, H, W], [target, ...])``."""
    images = torch.stack([image for image, _ in batch])
    return images, [target for _, target in batch]


def pad_targets(targets: Sequence[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image boxes and labels as padded tensors: boxes ``[B, M, 4]`` (zeros where padded)
    and labels ``[B, M]`` with ``-1`` where padded; ``M`` is the largest box count (at least 1)."""
    count = max([1] + [len(t["labels"]) for t in targets])
    boxes = torch.zeros(len(targets), count, 4, dtype=torch.float32)
    labels = torch.full((len(targets), count), -1, dtype=torch.int64)
    for i, t in enumerate(targets):
        n = len(t["labels"])
        boxes[i, :n] = t["boxes"]
        labels[i, :n] = t["labels"]
    return boxes, labels


class EpochSampler(Sampler[int]):
    """Indices in an order fixed by ``(seed, epoch)``, split across ``world_size`` ranks.

    Every rank gets the same number of indices (the permutation is padded by wrapping
    around), as DistributedDataParallel needs.
    """

    def __init__(self, length: int, shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1):
        self.length = length
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return math.ceil(self.length / self.world_size)

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) & 0x7FFF_FFFF_FFFF_FFFF)
            order = torch.randperm(self.length, generator=generator).tolist()
        else:
            order = list(range(self.length))
        total = len(self) * self.world_size
        if order:
            order = (order * math.ceil(total / len(order)))[:total]
        return iter(order[self.rank:total:self.world_size])


def make_loader(dataset, batch_size: int, shuffle: bool = True, seed: int = 0, workers: int = 0,
                drop_last: bool = False, rank: int = 0, world_size: int = 1) -> DataLoader:
    """A DataLoader over ``dataset`` with an :class:`EpochSampler`; call :func:`set_loader_epoch`
    before every epoch. Workers are not persistent, so each epoch's workers copy the dataset
    after ``set_epoch`` and see the current epoch."""
    sampler = EpochSampler(len(dataset), shuffle=shuffle, seed=seed, rank=rank, world_size=world_size)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      collate_fn=collate_detection, drop_last=drop_last, persistent_workers=False)


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Tell both the sampler (order) and the dataset (augmentations, final phase) the epoch."""
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)
