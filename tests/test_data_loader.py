"""Loading for training: persistent workers that still follow the epoch, every image every
epoch, and the in-memory cache of decoded images (``data.cache``)."""

import os
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tinynas.data import (AugmentConfig, CocoDataset, DetectionDataset, EpochIndex, cache_datasets, load_rgb,
                          make_loader, make_synthetic_dataset, set_loader_epoch)
from tinynas.data import cache as cache_module
from tinynas.data.transforms import shrink_to_fit
from tinynas.errors import UserError
from tinynas.train.recipe import parse_train_recipe

from train_helpers import tiny_recipe

SIZE = 64
EPOCHS = 4  # with one final epoch without mosaic


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("loader"), images=11, val_images=2, size=64, seed=5)


@pytest.fixture(scope="module")
def coco(made):
    return CocoDataset(made.train_annotations, made.train_images)


class _WhoLoads(DetectionDataset):
    """Tags each item with the process that made it, to see whether workers were kept."""

    def __getitem__(self, item):
        image, target = super().__getitem__(item)
        target["pid"] = os.getpid()
        return image, target


def _train_set(coco, cls=DetectionDataset):
    augment = AugmentConfig(mosaic_prob=1.0, mixup_prob=0.5, no_aug_epochs=1)
    return cls(coco, SIZE, train=True, augment=augment, seed=3, epochs=EPOCHS)


def test_persistent_workers_give_the_batches_of_the_main_process(coco):
    tail = EPOCHS - 1
    assert _train_set(coco).strong_augment_at(1) and not _train_set(coco).strong_augment_at(tail)
    persistent = make_loader(_train_set(coco, _WhoLoads), batch_size=4, seed=2, workers=2)
    assert persistent.persistent_workers
    pids = []
    for epoch in (0, 1, tail):
        set_loader_epoch(persistent, epoch)
        parallel = list(persistent)
        serial_loader = make_loader(_train_set(coco), batch_size=4, seed=2, workers=0)
        set_loader_epoch(serial_loader, epoch)
        serial = list(serial_loader)
        assert [len(t) for _, t in serial] == [4, 4, 3]
        assert len(parallel) == len(serial)
        for (images_a, targets_a), (images_b, targets_b) in zip(serial, parallel):
            assert torch.equal(images_a, images_b)
            for a, b in zip(targets_a, targets_b):
                assert a["image_id"] == b["image_id"] and a["scale"] == b["scale"]
                assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["labels"], b["labels"])
        pids.append({t["pid"] for _, targets in parallel for t in targets})
        if epoch == 0:
            first = serial
    # the same two worker processes served every epoch, and yet the epochs differ
    assert len(pids[0]) == 2 and pids[0] == pids[1] == pids[2] and os.getpid() not in pids[0]
    assert not torch.equal(first[0][0], serial[0][0])


def test_every_image_is_used_once_per_epoch(coco):
    ids = [r.image_id for r in coco.records]
    for batch, sizes in ((4, [4, 4, 3]), (5, [5, 6]), (11, [11]), (20, [11])):
        loader = make_loader(DetectionDataset(coco, SIZE), batch_size=batch, seed=1)
        assert len(loader) == len(sizes)
        orders = []
        for epoch in (0, 1):
            set_loader_epoch(loader, epoch)
            batches = [[t["image_id"] for t in targets] for _, targets in loader]
            assert [len(b) for b in batches] == sizes  # a lone last image joins the batch before
            orders.append(sum(batches, []))
            assert sorted(orders[-1]) == sorted(ids)
        assert batch >= len(ids) or orders[0] != orders[1]
    # two ranks: equal batch counts, and together they cover every image
    shards = [make_loader(DetectionDataset(coco, SIZE), batch_size=3, seed=1, rank=r, world_size=2) for r in (0, 1)]
    seen = [[t["image_id"] for _, targets in shard for t in targets] for shard in shards]
    assert len(shards[0]) == len(shards[1]) == 2 and len(seen[0]) == len(seen[1]) == 6
    assert set(seen[0]) | set(seen[1]) == set(ids)


def test_an_item_carries_its_epoch(coco):
    ds = _train_set(coco)
    ds.set_epoch(2)
    plain = ds[5]
    ds.set_epoch(0)
    carried = ds[EpochIndex(2, 5)]
    assert torch.equal(plain[0], carried[0]) and torch.equal(plain[1]["boxes"], carried[1]["boxes"])
    assert not torch.equal(ds[5][0], carried[0])


def test_cached_images_equal_a_fresh_decode_and_stay_unchanged(made, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(made.train_images, root)
    coco = CocoDataset(made.train_annotations, root)
    # With a size, the cache keeps each image as letterboxes and mosaic tiles of that size use it.
    fresh = {(i, side): load_rgb(coco.image_path(i), side) if side is None
             else shrink_to_fit(load_rgb(coco.image_path(i), side), side)
             for i in range(len(coco)) for side in (None, 32)}
    assert max(fresh[0, 32].shape[:2]) == 32 < max(fresh[0, None].shape[:2])
    assert coco.decoded_bytes(32) == sum(fresh[i, 32].nbytes for i in range(len(coco)))
    assert cache_datasets("ram", [coco], 32) == [True]
    coco.cache_decoded(None)
    shutil.rmtree(root)  # from here on, only the cache can answer
    for (index, side), image in fresh.items():
        assert np.array_equal(coco.load(index, side).image, image)
    sample = coco.load(3, 32)
    boxes = sample.boxes.copy()
    sample.image[:] = 0
    sample.boxes[:] = -1
    again = coco.load(3, 32)
    assert np.array_equal(again.image, fresh[3, 32]) and np.array_equal(again.boxes, boxes)
    with pytest.raises(UserError, match="image file not found"):
        coco.load(3, 48)  # another size is another cache entry


def test_cache_modes_decide_what_is_cached(coco, monkeypatch):
    assert cache_module.available_memory() > 0  # read from /proc/meminfo (or sysconf) here
    need = coco.decoded_bytes(SIZE)
    assert cache_datasets("none", [coco], SIZE) == [False]
    monkeypatch.setattr(cache_module, "available_memory", lambda: 4 * need)  # budget: a quarter of it
    assert cache_datasets("auto", [coco], SIZE) == [True]
    assert cache_datasets("auto", [coco], SIZE, processes=2) == [False]
    monkeypatch.setattr(cache_module, "available_memory", lambda: None)
    assert cache_datasets("auto", [coco], SIZE) == [False]


def test_data_cache_option_is_checked():
    data = SimpleNamespace(classes=("a", "b", "c"), train_images="i", train_annotations="a.json",
                           val_images="i", val_annotations="a.json")
    doc = tiny_recipe(data, "run", 64, epochs=1)
    assert parse_train_recipe(doc, "r.yaml").data.cache == "auto"
    doc["data"]["cache"] = "ram"
    assert parse_train_recipe(doc, "r.yaml").data.cache == "ram"
    for bad, reason in (("disk", "expected one of auto, ram, none, got 'disk'"), (True, "expected text")):
        doc["data"]["cache"] = bad
        with pytest.raises(UserError) as err:
            parse_train_recipe(doc, "r.yaml")
        assert err.value.field == "data.cache" and str(err.value).startswith("r.yaml: data.cache: ")
        assert reason in str(err.value) and "\n" not in str(err.value)


def test_a_cache_of_shrunk_images_feeds_the_pipeline_what_decoding_does(made, tmp_path):
    """Letterboxed and mosaic samples (pixels exactly, boxes to float rounding), and the
    placements that map predictions back, whether the images come from the cache or the files."""
    size = 40  # below the synthetic images' side: every use shrinks them
    plain, cached = (CocoDataset(made.train_annotations, made.train_images) for _ in range(2))
    cached.cache_decoded(size)
    for train in (True, False):
        a = DetectionDataset(plain, size, train=train, augment=AugmentConfig(mosaic_prob=0.5), seed=1, epochs=EPOCHS)
        b = DetectionDataset(cached, size, train=train, augment=AugmentConfig(mosaic_prob=0.5), seed=1, epochs=EPOCHS)
        for epoch in (0, 3):  # the last epoch has no mosaic (no_aug_epochs)
            for index in range(len(plain)):
                (want, want_place), (got, got_place) = a.sample(index, epoch), b.sample(index, epoch)
                assert np.array_equal(got.image, want.image), (train, epoch, index)
                np.testing.assert_allclose(got.boxes, want.boxes, rtol=1e-6, atol=1e-4)
                assert np.array_equal(got.labels, want.labels)
                assert got_place == want_place
