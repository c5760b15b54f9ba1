"""Train and val pipelines: COCO example -> (image tensor, target dict), repeatable per item.

Every random draw of item ``index`` in epoch ``epoch`` comes from a generator seeded with
``(seed, epoch, index)``: the result does not depend on worker count, batch order or what
ran before, which is what lets an interrupted training resume bit for bit. The loader asks
for ``dataset[EpochIndex(epoch, index)]``; a plain ``dataset[index]`` uses the epoch last
given to ``set_epoch``. Mosaic, mixup and the random affine are off for the final
``no_aug_epochs`` epochs.

The image is a float32 ``[3, size, size]`` tensor, RGB, values in ``[0, 1]`` (pixel / 255),
grey 114/255 padding. The target dict holds:

- ``boxes``: float32 ``[N, 4]`` ``xyxy`` in model-input pixels; ``labels``: int64 ``[N]``;
- ``ignore_boxes``: float32 ``[M, 4]`` crowd regions in the same frame;
- ``image_id``: the COCO image id; ``orig_size``: ``(height, width)`` of the image file;
- ``scale``, ``pad``: ``model = original * scale + pad`` for letterboxed items (val, and
  unflipped train items without mosaic); other train items have ``scale`` 0.0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import AUTO, Auto, Source, as_source, read_section, setting
from .coco import CocoDataset
from ..errors import UserError
from .collate import EpochIndex, LoadFailure
from .mosaic import mixup, mosaic
from .sample import Sample
from .transforms import AffineRange, Placement, drop_degenerate, hsv_jitter, letterbox, random_hflip


# Probabilities, shares of the image, and colour gains (a gain g scales by 1 +- g) live in [0, 1];
# angles past 180 degrees only repeat smaller ones.
UNIT = "[0, 1]"
NON_NEGATIVE = "[0, inf)"


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentations. The defaults are a stock short-run trainer's (ultralytics'): mosaic
    with zoom 0.5-1.5 and a 10% shift, no rotation, shear or mixup, and the last tenth of the
    epochs quiet (``no_aug_epochs: auto``). DAMO-YOLO's heavier COCO values (zoom 0.1-2.0,
    10 degrees, shear 2, shift 0.2, mixup 0.15, 16 quiet epochs) are stated in its recipes:
    on a few dozen images they leave the model too little of the real picture to learn from.
    HSV gains are YOLOv5's.

    As in DAMO-YOLO (and YOLOX), the random affine (``degrees``, ``translate``, ``scale``,
    ``shear``) is part of the mosaic: an item drawn without mosaic (probability
    ``1 - mosaic_prob``, and every item of the final ``no_aug_epochs`` epochs) is only
    letterboxed, then colour-jittered and flipped like every training item.
    """

    mosaic_prob: float = setting(1.0, bounds=UNIT)
    mixup_prob: float = setting(0.0, bounds=UNIT)
    flip_prob: float = setting(0.5, bounds=UNIT, help="horizontal flips")
    degrees: float = setting(0.0, bounds="[0, 180]", unit="degrees", help="random rotation, +-")
    translate: float = setting(0.1, bounds=UNIT, help="random shift, a share of the image")
    scale: tuple[float, float] = setting((0.5, 1.5), bounds="(0, inf)", help="[low, high] zoom, low <= high")
    shear: float = setting(0.0, bounds="[0, 90)", unit="degrees")
    hsv_hue: float = setting(0.015, bounds=UNIT)
    hsv_saturation: float = setting(0.7, bounds=UNIT)
    hsv_value: float = setting(0.4, bounds=UNIT)
    no_aug_epochs: int | Auto = setting(AUTO, bounds=NON_NEGATIVE, help="auto: round(epochs / 10)")
    min_box_size: float = setting(2.0, bounds=NON_NEGATIVE, unit="pixels")

    def quiet_epochs(self, epochs: int) -> int:
        """How many final epochs of a ``epochs``-epoch run go without mosaic, mixup and affine."""
        if self.no_aug_epochs == "auto":
            return int(round(epochs / 10))
        return int(self.no_aug_epochs)

    @property
    def affine(self) -> AffineRange:
        return AffineRange(degrees=self.degrees, translate=self.translate, scale=tuple(self.scale), shear=self.shear)

    @classmethod
    def from_dict(cls, data: dict | None, source: str | Source = "<augment>") -> "AugmentConfig":
        """Build from a recipe's ``augment`` mapping, naming the file and field of any bad value."""
        config = read_section(cls, data, source, "augment")
        low, high = config.scale
        if low > high:
            raise as_source(source).error("augment.scale", f"expected [low, high] with 0 < low <= high, "
                                                           f"got {list(config.scale)!r}")
        return config

    def to_dict(self) -> dict:
        out = asdict(self)
        out["scale"] = list(self.scale)
        return out


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one item's draws; non-negative ints keep SeedSequence happy."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(index)])


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """``uint8 [H, W, 3]`` -> float32 ``[3, H, W]`` in ``[0, 1]``."""
    # numpy, not torch: torch's intra-op threads thrash when DataLoader workers share the cores.
    chw = image.transpose(2, 0, 1).astype(np.float32)
    np.divide(chw, 255.0, out=chw)
    return torch.from_numpy(chw)


class DetectionDataset(Dataset):
    """A :class:`CocoDataset` made into model inputs of ``size x size``.

    ``train=False`` letterboxes only (validation, evaluation). ``train=True`` applies the
    augmentations of ``augment``; pass ``epochs`` (the run's total) so the final
    ``augment.no_aug_epochs`` epochs run without mosaic, mixup and affine.
    """

    def __init__(self, coco: CocoDataset, size: int, train: bool = False, augment: AugmentConfig = AugmentConfig(),
                 seed: int = 0, epochs: int | None = None):
        self.coco = coco
        self.size = size
        self.train = train
        self.augment = augment
        self.seed = seed
        self.epochs = epochs
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch of items asked for by a plain index (loader items carry their own)."""
        self.epoch = int(epoch)

    @property
    def strong_augment(self) -> bool:
        """Whether mosaic/mixup/affine are on in the epoch given to ``set_epoch``."""
        return self.strong_augment_at(self.epoch)

    def strong_augment_at(self, epoch: int) -> bool:
        """Whether mosaic/mixup/affine are on in ``epoch``."""
        if not self.train:
            return False
        if self.epochs is None:
            return True
        return epoch < self.epochs - self.augment.quiet_epochs(self.epochs)

    @property
    def names(self) -> tuple[str, ...]:
        return self.coco.names

    @property
    def num_classes(self) -> int:
        return self.coco.num_classes

    def __len__(self) -> int:
        return len(self.coco)

    def sample(self, index: int, epoch: int | None = None) -> tuple[Sample, Placement | None]:
        """The augmented example before conversion to tensors (handy to look at); ``epoch``
        defaults to the one given to ``set_epoch``."""
        epoch = self.epoch if epoch is None else int(epoch)
        raw = self.coco.load(index, self.size)
        if not self.train:
            sample, placement = letterbox(raw, self.size)
            return sample, self._in_original(placement, index)
        aug = self.augment
        rng = item_rng(self.seed, epoch, index)
        placement = None
        if self.strong_augment_at(epoch) and rng.random() < aug.mosaic_prob:
            sample = self._mosaic(raw, rng)
            if rng.random() < aug.mixup_prob:
                partner = self._mosaic(self.coco.load(int(rng.integers(len(self.coco))), self.size), rng)
                sample = mixup(sample, partner, rng)
        else:
            sample, placement = letterbox(raw, self.size)
            sample = drop_degenerate(sample, aug.min_box_size)
            placement = self._in_original(placement, index)
        sample = hsv_jitter(sample, rng, aug.hsv_hue, aug.hsv_saturation, aug.hsv_value)
        flipped = random_hflip(sample, rng, aug.flip_prob)
        # A mirrored image no longer maps back by scale and pad; training never needs to.
        return flipped, placement if flipped is sample else None

    def _in_original(self, placement: Placement, index: int) -> Placement:
        """Express a placement against the recorded image size: a JPEG decoded at reduced
        scale was letterboxed from fewer pixels, but predictions must map to the original."""
        record = self.coco.records[index]
        return placement.against(record.width, record.height, self.size)

    def _mosaic(self, first: Sample, rng: np.random.Generator) -> Sample:
        others = [self.coco.load(int(i), self.size) for i in rng.integers(len(self.coco), size=3)]
        return mosaic([first, *others], rng, self.size, self.augment.affine, min_size=self.augment.min_box_size)

    def __getitems__(self, items: list) -> list[tuple[torch.Tensor, dict]] | LoadFailure:
        """A batch's items, as the DataLoader fetches them; a file that cannot be read comes back as
        a :class:`LoadFailure`, since a worker's exception would reach the user as a traceback."""
        try:
            return [self[item] for item in items]
        except UserError as err:
            return LoadFailure.of(err)

    def __getitem__(self, item: int | EpochIndex) -> tuple[torch.Tensor, dict]:
        epoch, index = item if isinstance(item, tuple) else (self.epoch, item)
        index = int(index)
        sample, placement = self.sample(index, epoch)
        record = self.coco.records[index]
        target = {
            "boxes": torch.from_numpy(np.ascontiguousarray(sample.boxes, dtype=np.float32)).reshape(-1, 4),
            "labels": torch.from_numpy(np.ascontiguousarray(sample.labels, dtype=np.int64)).reshape(-1),
            "ignore_boxes": torch.from_numpy(np.ascontiguousarray(sample.ignore, dtype=np.float32)).reshape(-1, 4),
            "image_id": int(record.image_id),
            "orig_size": (int(record.height), int(record.width)),
            "scale": float(placement.scale) if placement else 0.0,
            "pad": (int(placement.pad_x), int(placement.pad_y)) if placement else (0, 0),
        }
        return to_tensor(sample.image), target
