"""Training settings left ``auto``: chosen from the run, recorded, never overriding a stated value."""

import math
from pathlib import Path

import pytest
import torch
import yaml

from tinynas import UserError
from tinynas.checkpoint import load_checkpoint
from tinynas.cli import main
from tinynas.train.auto import resolve_auto
from tinynas.train.recipe import load_train_recipe, parse_train_recipe
from tinynas.train.schedule import bias_learning_rate
from tinynas.train.trainer import train

from train_helpers import synthetic, tiny_recipe

ROOT = Path(__file__).resolve().parent.parent
COCO_TRAIN_IMAGES = 118_287


def _auto_doc(data, out, size, epochs, **train_values):
    doc = tiny_recipe(data, out, size, epochs)
    doc["train"] = {"epochs": epochs, "batch_size": 8, **train_values}
    doc.pop("augment")
    return doc


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return synthetic(tmp_path_factory.mktemp("small"), images=20, val_images=4, size=64, seed=2)


def test_a_short_run_on_few_images_gets_adamw_and_run_sized_warmup_ema_and_quiet_tail(small, tmp_path):
    recipe = parse_train_recipe(_auto_doc(small, tmp_path, 64, epochs=100))
    resolved, chosen = resolve_auto(recipe, train_images=43, iters_per_epoch=3, batch_size=16)
    t = resolved.train
    classes = recipe.model.head.num_classes
    assert t.optimizer == "adamw"
    assert t.lr_per_64 * 16 / 64 == pytest.approx(0.002 * 5 / (4 + classes), abs=1e-6)  # rounded to 6 places
    assert round(t.warmup_epochs * 3) == 100  # 3 epochs are 9 iterations: the 100-iteration floor wins
    assert t.warmup_bias_lr == 0.1
    lag = t.ema_decay / (1 - t.ema_decay)
    assert lag == pytest.approx(30, rel=1e-3)  # a tenth of the 300 iterations
    assert t.ema_ramp == pytest.approx(0.4 * lag, rel=1e-3)
    assert resolved.augment.no_aug_epochs == 10
    assert {key for key, _, _ in chosen} == {"train.optimizer", "train.lr_per_64", "train.warmup_epochs",
                                              "train.warmup_bias_lr", "train.ema_decay", "train.ema_ramp",
                                              "augment.no_aug_epochs"}


def test_warmup_never_takes_more_than_a_third_of_a_tiny_run(small, tmp_path):
    recipe = parse_train_recipe(_auto_doc(small, tmp_path, 64, epochs=10))
    resolved, _ = resolve_auto(recipe, train_images=20, iters_per_epoch=3, batch_size=8)
    assert round(resolved.train.warmup_epochs * 3) == 10  # 30 iterations: a third, not 100


def test_a_long_run_gets_sgd_at_damo_yolos_rate(small, tmp_path):
    recipe = parse_train_recipe(_auto_doc(small, tmp_path, 64, epochs=300))
    resolved, _ = resolve_auto(recipe, train_images=COCO_TRAIN_IMAGES, iters_per_epoch=1849, batch_size=64)
    assert resolved.train.optimizer == "sgd"
    assert resolved.train.lr_per_64 == 0.01
    assert resolved.train.ema_decay == 0.9998  # capped at DAMO-YOLO's


def test_stated_values_are_kept_and_a_stated_lr_keeps_sgd(small, tmp_path):
    doc = _auto_doc(small, tmp_path, 64, epochs=100, lr_per_64=0.04, ema_decay=0.95, warmup_epochs=2)
    doc["augment"] = {"no_aug_epochs": 3}
    resolved, chosen = resolve_auto(parse_train_recipe(doc), train_images=43, iters_per_epoch=3, batch_size=16)
    assert resolved.train.optimizer == "sgd"
    assert (resolved.train.lr_per_64, resolved.train.ema_decay, resolved.train.warmup_epochs) == (0.04, 0.95, 2.0)
    assert resolved.augment.no_aug_epochs == 3
    assert "train.lr_per_64" not in {key for key, _, _ in chosen}


# DAMO-YOLO's COCO recipe (tinyvision/DAMO-YOLO configs): what the shipped COCO recipes must resolve to.
DAMO_TRAIN = {"epochs": 300, "batch_size": 64, "optimizer": "sgd", "lr_per_64": 0.01, "momentum": 0.9,
              "weight_decay": 5e-4, "warmup_epochs": 5.0, "warmup_bias_lr": 0.0, "min_lr_ratio": 0.05,
              "ema_decay": 0.9998, "ema_ramp": 2000.0}
DAMO_AUGMENT = {"mosaic_prob": 1.0, "mixup_prob": 0.15, "flip_prob": 0.5, "degrees": 10.0, "translate": 0.2,
                "scale": [0.1, 2.0], "shear": 2.0, "no_aug_epochs": 16}


@pytest.mark.parametrize("size", ["t", "s", "m", "l"])
def test_the_coco_recipes_resolve_to_damo_yolos_exact_values(size):
    recipe = load_train_recipe(ROOT / "recipes" / "train" / f"damoyolo-{size}-coco.yaml")
    resolved, chosen = resolve_auto(recipe, train_images=COCO_TRAIN_IMAGES, iters_per_epoch=1849, batch_size=64)
    assert chosen == []
    doc = resolved.to_dict()
    assert {k: doc["train"][k] for k in DAMO_TRAIN} == DAMO_TRAIN
    assert {k: doc["augment"][k] for k in DAMO_AUGMENT} == DAMO_AUGMENT


def test_bias_lr_falls_from_its_start_to_the_lr_over_the_warmup():
    assert bias_learning_rate(0, 0.0, 100, 0.1) == pytest.approx(0.1)
    assert bias_learning_rate(50, 0.002, 100, 0.1) == pytest.approx(0.051)
    assert bias_learning_rate(100, 0.002, 100, 0.1) == 0.002
    assert bias_learning_rate(10, 0.002, 100, 0.0) == 0.002


def test_bad_auto_fields_name_the_field(small, tmp_path):
    for key, value, field in (("optimizer", "adam", "train.optimizer"), ("lr_per_64", "fast", "train.lr_per_64"),
                              ("ema_decay", 1.5, "train.ema_decay")):
        doc = _auto_doc(small, tmp_path, 64, epochs=2, **{key: value})
        with pytest.raises(UserError) as err:
            parse_train_recipe(doc, "r.yaml")
        assert err.value.field == field


def test_an_all_auto_run_records_its_choices_prints_them_and_resumes_exactly(small, tmp_path, capsys):
    doc = _auto_doc(small, tmp_path / "a", 64, epochs=2)
    train(parse_train_recipe(doc), progress=False)
    err = capsys.readouterr().err
    assert "auto: train.optimizer adamw" in err and "augment.no_aug_epochs" in err
    written = yaml.safe_load((tmp_path / "a" / "recipe.yaml").read_text())
    assert written["train"]["optimizer"] == "adamw"
    auto_keys = ("optimizer", "lr_per_64", "warmup_epochs", "warmup_bias_lr", "ema_decay", "ema_ramp")
    assert "auto" not in {str(written["train"][k]) for k in auto_keys} | {str(written["augment"]["no_aug_epochs"])}
    assert written["train"]["warmup_bias_lr"] == 0.1

    stopped = train(parse_train_recipe(dict(doc, out=str(tmp_path / "b"))), stop_after=1, progress=False)
    assert stopped.epochs_done == 1
    assert main(["train", "--resume", str(tmp_path / "b"), "--quiet"]) == 0
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    for key in a.state_dict:
        assert torch.equal(a.state_dict[key], b.state_dict[key]), key
    assert not math.isnan(a.extra["best_ap"])
