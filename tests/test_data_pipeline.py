"""Train/val pipelines: output format, repeatability per (seed, epoch, index), the final
no-mosaic phase, letterbox mapping back, batching and the epoch sampler."""

import numpy as np
import pytest
import torch

from tinynas.data import (AugmentConfig, CocoDataset, DetectionDataset, EpochSampler, collate_detection,
                          make_loader, make_synthetic_dataset, pad_targets, set_loader_epoch)
from tinynas.errors import UserError

SIZE = 96


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    made = make_synthetic_dataset(tmp_path_factory.mktemp("syn"), images=12, val_images=2, size=80, seed=3)
    return CocoDataset(made.train_annotations, made.train_images)


def test_item_format(coco):
    image, target = DetectionDataset(coco, SIZE, train=True, seed=0, epochs=10)[0]
    assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert target["boxes"].dtype == torch.float32 and target["boxes"].shape[1] == 4
    assert target["labels"].dtype == torch.int64 and len(target["labels"]) == len(target["boxes"])
    assert ((target["labels"] >= 0) & (target["labels"] < coco.num_classes)).all()
    boxes = target["boxes"]
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert boxes.min() >= 0 and boxes.max() <= SIZE
    assert target["image_id"] == coco.records[0].image_id
    assert target["ignore_boxes"].shape[1] == 4


def test_items_repeat_per_seed_epoch_index(coco):
    a = DetectionDataset(coco, SIZE, train=True, seed=7, epochs=10)
    b = DetectionDataset(coco, SIZE, train=True, seed=7, epochs=10)
    for epoch in (0, 3):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        for index in (5, 1):  # order of access must not matter
            ia, ta = a[index]
            ib, tb = b[index]
            assert torch.equal(ia, ib) and torch.equal(ta["boxes"], tb["boxes"])
    a.set_epoch(4)
    b.set_epoch(5)
    assert not torch.equal(a[2][0], b[2][0])
    other_seed = DetectionDataset(coco, SIZE, train=True, seed=8, epochs=10)
    other_seed.set_epoch(4)
    assert not torch.equal(a[2][0], other_seed[2][0])


def test_final_epochs_switch_off_mosaic_and_mixup(coco):
    augment = AugmentConfig(mosaic_prob=1.0, mixup_prob=1.0, no_aug_epochs=3)
    ds = DetectionDataset(coco, SIZE, train=True, seed=0, augment=augment, epochs=10)
    ds.set_epoch(6)
    assert ds.strong_augment
    mosaic_counts = [len(ds[i][1]["labels"]) for i in range(len(ds))]
    ds.set_epoch(7)
    assert not ds.strong_augment
    for i in range(len(ds)):
        image, target = ds[i]
        raw = coco[i]
        # A letterboxed single image: exactly its own objects, all in the middle band.
        assert sorted(target["labels"].tolist()) == sorted(raw.labels.tolist())
        assert image.shape == (3, SIZE, SIZE)
    # Mosaic + mixup of eight images carries more objects than single images do.
    assert sum(mosaic_counts) > 2 * sum(len(coco[i].labels) for i in range(len(coco)))


def test_validation_boxes_map_back_to_the_original(coco):
    ds = DetectionDataset(coco, SIZE, train=False)
    for i in range(3):
        image, target = ds[i]
        raw = coco[i]
        assert target["orig_size"] == (raw.height, raw.width)
        scale, (pad_x, pad_y) = target["scale"], target["pad"]
        assert scale == pytest.approx(SIZE / 80)
        back = target["boxes"].numpy().copy()
        back[:, [0, 2]] = (back[:, [0, 2]] - pad_x) / scale
        back[:, [1, 3]] = (back[:, [1, 3]] - pad_y) / scale
        np.testing.assert_allclose(back, raw.boxes, atol=1e-3)
    again = DetectionDataset(coco, SIZE, train=False)
    again.set_epoch(5)
    assert torch.equal(again[0][0], ds[0][0])


def test_loader_batches_do_not_depend_on_workers(coco):
    def epoch_batches(workers):
        ds = DetectionDataset(coco, SIZE, train=True, seed=1, epochs=10)
        loader = make_loader(ds, batch_size=4, shuffle=True, seed=1, workers=workers)
        set_loader_epoch(loader, 2)
        return list(loader)

    serial, parallel = epoch_batches(0), epoch_batches(2)
    assert len(serial) == 3
    for (images_a, targets_a), (images_b, targets_b) in zip(serial, parallel):
        assert images_a.shape == (4, 3, SIZE, SIZE)
        assert torch.equal(images_a, images_b)
        assert [t["image_id"] for t in targets_a] == [t["image_id"] for t in targets_b]


def test_epoch_sampler_orders_and_shards():
    sampler = EpochSampler(10, shuffle=True, seed=4)
    sampler.set_epoch(0)
    first = list(sampler)
    assert sorted(first) == list(range(10))
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first
    shards = []
    for rank in range(3):
        shard = EpochSampler(10, shuffle=True, seed=4, rank=rank, world_size=3)
        shards.append(list(shard))
        assert len(shard) == 4 == len(shards[-1])
    assert set(sum(shards, [])) == set(range(10))


def test_collate_and_pad_targets():
    t1 = {"boxes": torch.tensor([[1.0, 2, 3, 4]]), "labels": torch.tensor([2])}
    t2 = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    images, targets = collate_detection([(torch.zeros(3, 8, 8), t1), (torch.ones(3, 8, 8), t2)])
    assert images.shape == (2, 3, 8, 8) and targets == [t1, t2]
    boxes, labels = pad_targets(targets)
    assert boxes.shape == (2, 1, 4) and labels.tolist() == [[2], [-1]]
    assert boxes[0, 0].tolist() == [1, 2, 3, 4]


def test_augment_config_from_recipe_mapping():
    config = AugmentConfig.from_dict({"mosaic_prob": 0.5, "scale": [0.5, 1.5], "no_aug_epochs": 2}, "r.yaml")
    assert config.mosaic_prob == 0.5 and config.scale == (0.5, 1.5) and config.no_aug_epochs == 2
    assert AugmentConfig.from_dict(config.to_dict()) == config
    defaults = AugmentConfig()
    assert (defaults.mosaic_prob, defaults.mixup_prob, defaults.flip_prob, defaults.no_aug_epochs) == (1.0, 0.0, 0.5, "auto")
    assert (defaults.scale, defaults.degrees, defaults.shear, defaults.translate) == ((0.5, 1.5), 0.0, 0.0, 0.1)
    assert defaults.quiet_epochs(100) == 10 and defaults.quiet_epochs(4) == 0 and config.quiet_epochs(100) == 2
    assert AugmentConfig.from_dict({"no_aug_epochs": "auto"}).no_aug_epochs == "auto"
    with pytest.raises(UserError, match="augment.no_aug_epochs"):
        AugmentConfig.from_dict({"no_aug_epochs": "later"}, "r.yaml")
    with pytest.raises(UserError, match="augment.mixup_prob"):
        AugmentConfig.from_dict({"mixup_prob": 1.5}, "r.yaml")
    with pytest.raises(UserError, match="augment.scale"):
        AugmentConfig.from_dict({"scale": [2.0, 1.0]}, "r.yaml")
    with pytest.raises(UserError, match="augment.mosiac_prob"):
        AugmentConfig.from_dict({"mosiac_prob": 1.0}, "r.yaml")
