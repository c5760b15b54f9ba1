"""Batching: stacking images, padding targets, and an epoch-seeded sampler and loader.

The sampler's order depends only on ``(seed, epoch)``, and each item's augmentation only on
``(seed, epoch, index)`` (see ``pipeline.py``), so epoch ``e`` of a resumed run sees exactly
the batches an uninterrupted run saw. The batch sampler hands the dataset ``EpochIndex(epoch,
index)`` items, so persistent DataLoader workers, which never see a later ``set_epoch`` on their
copy of the dataset, still augment each item for the right epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, NamedTuple, Sequence

import torch
from torch.utils.data import DataLoader, Sampler

from ..errors import UserError


@dataclass(frozen=True)
class LoadFailure:
    """A ``UserError`` met while a batch was loaded, carried back as the batch itself.

    An exception raised in a DataLoader worker reaches the main process only as text
    ("Caught UserError in DataLoader worker process 1" and a traceback) inside a RuntimeError;
    a plain value crosses intact, and :class:`DetectionLoader` raises it again there.
    """

    source: str
    field: str
    reason: str

    @classmethod
    def of(cls, err: UserError) -> "LoadFailure":
        return cls(err.source, err.field, err.reason)

    def error(self) -> UserError:
        return UserError(self.source, self.field, self.reason)


def collate_detection(batch: Sequence[tuple[torch.Tensor, dict]] | LoadFailure) -> tuple[torch.Tensor, list[dict]]:
    """``[(image, target), ...]`` -> ``(images [B, 3, H, W], [target, ...])``; a failure passes through."""
    if isinstance(batch, LoadFailure):
        return batch
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


class EpochIndex(NamedTuple):
    """A dataset index together with the epoch it is drawn in."""

    epoch: int
    index: int


class EpochBatchSampler(Sampler[list]):
    """Batches of :class:`EpochIndex` items from an :class:`EpochSampler`.

    Without ``drop_last`` every index is used: the last batch may be smaller, except that a
    last batch of one item joins the one before it, because BatchNorm cannot train on a
    single example whose deepest feature map is 1x1 (and learns little from one anyway).
    """

    def __init__(self, sampler: EpochSampler, batch_size: int, drop_last: bool = False):
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def _bounds(self, count: int) -> list[tuple[int, int]]:
        full, rest = divmod(count, self.batch_size)
        bounds = [(i * self.batch_size, (i + 1) * self.batch_size) for i in range(full)]
        if rest and not self.drop_last:
            if rest == 1 and bounds:
                bounds[-1] = (bounds[-1][0], count)
            else:
                bounds.append((count - rest, count))
        return bounds

    def __len__(self) -> int:
        return len(self._bounds(len(self.sampler)))

    def __iter__(self) -> Iterator[list[EpochIndex]]:
        epoch = self.sampler.epoch
        items = [EpochIndex(epoch, int(index)) for index in self.sampler]
        for start, stop in self._bounds(len(items)):
            yield items[start:stop]


class DetectionLoader(DataLoader):
    """A DataLoader that raises a batch's :class:`LoadFailure` as the ``UserError`` it was, with
    any number of workers (the dataset's ``__getitems__`` returns one instead of raising)."""

    def __iter__(self):
        for batch in super().__iter__():
            if isinstance(batch, LoadFailure):
                raise batch.error()
            yield batch


def make_loader(dataset, batch_size: int, shuffle: bool = True, seed: int = 0, workers: int = 0,
                drop_last: bool = False, rank: int = 0, world_size: int = 1,
                persistent_workers: bool = True) -> DataLoader:
    """A DataLoader over ``dataset`` with an :class:`EpochSampler`; call :func:`set_loader_epoch`
    before every epoch. ``dataset[EpochIndex(epoch, index)]`` must give the item of that epoch.

    Workers persist by default: starting them again every epoch costs seconds, which on a small
    dataset is most of an epoch. (DataLoader already limits each worker to one torch thread.)
    """
    sampler = EpochSampler(len(dataset), shuffle=shuffle, seed=seed, rank=rank, world_size=world_size)
    batches = EpochBatchSampler(sampler, batch_size, drop_last=drop_last)
    # Two batches in flight per worker (DataLoader's default): batches of large images are big,
    # and the training step, not the data, is the bottleneck once the pipeline is full.
    extra = {"persistent_workers": persistent_workers, "prefetch_factor": 2} if workers > 0 else {}
    return DetectionLoader(dataset, batch_sampler=batches, num_workers=workers, collate_fn=collate_detection,
                           **extra)


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Tell the batch sampler (order, and the epoch each item carries) and the dataset (for
    callers that index it with a plain int) the epoch."""
    for part in (loader.batch_sampler, loader.sampler, loader.dataset):
        if hasattr(part, "set_epoch"):
            part.set_epoch(epoch)
