"""Training end to end with the other YOLO systems' parts: every assigner and every head learns the
synthetic shapes (AP50 >= 0.5) in a short run, and the run's files name the parts it used.

Each run pairs a head with its own system's neck, assigner and losses: YOLOX's (PAFPN, decoupled
head with direct boxes, SimOTA, BCE, CIoU), YOLOv6's (Rep-PAN, efficient decoupled head with
direct boxes, TAL, VFL, SIoU) and TOOD with DAMO-YOLO's loss. AlignOTA with the zero head is
``test_train.py``'s run. Two settings fit these heads to a run of ~100 iterations:

* ``bn_momentum: 0.1``: their stacked BatchNorms are scored with running statistics that, at
  DAMO-YOLO's 0.03, still average over weights from ~30 iterations back (YOLOv6's effidehead
  reached AP50 0.36 in 20 epochs at 0.03, 0.94 at 0.1).
* ``prior_prob: 0.1`` for the heads with objectness: their score is sigmoid(cls) x sigmoid(obj),
  so a prior on each starts it at prior^2 (1e-4 at 0.01), and DAMO-YOLO's box loss, weighted
  by each positive's score, then barely moves (TOOD: AP50 0.0 in 20 epochs; 0.84 at 0.1).
"""

import csv

import pytest
import torch
import yaml

from tinynas.checkpoint import load_checkpoint
from tinynas.data import CocoDataset, DetectionDataset
from tinynas.train.evaluate import evaluate
from tinynas.train.recipe import parse_train_recipe
from tinynas.train.trainer import train

from train_helpers import synthetic, tiny_recipe

SYSTEMS = {
    "yolox": ({"type": "pafpn", "depth": 0.33}, {"type": "decoupled", "reg_max": 0, "prior_prob": 0.1},
              {"assigner": "simota", "cls_loss": "bce", "box_loss": "ciou", "dfl": False}, 30),
    "yolov6": ({"type": "reppan", "depth": 0.33}, {"type": "effidehead", "reg_max": 0},
               {"assigner": "tal", "cls_loss": "vfl", "box_loss": "siou", "dfl": False}, 30),
    "tood": ({"type": "giraffe"}, {"type": "tood", "prior_prob": 0.1}, {}, 20),
}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return synthetic(tmp_path_factory.mktemp("shapes"), images=64, val_images=16, size=128)


@pytest.mark.parametrize("system", list(SYSTEMS))
def test_each_assigner_and_head_learns_to_detect_shapes(system, shapes, tmp_path):
    neck, head, losses, epochs = SYSTEMS[system]
    doc = tiny_recipe(shapes, tmp_path / "run", 128, epochs=epochs, eval_interval=epochs, bn_momentum=0.1,
                      **losses)
    doc["neck"] = {"out_channels": doc["neck"]["out_channels"], **neck}
    doc["head"].update(head)
    recipe = parse_train_recipe(doc)
    result = train(recipe, progress=False)
    assert result.last_metrics["AP50"] >= 0.5, result.last_metrics

    options = recipe.train.loss_options(recipe.model.head.reg_max)
    with open(tmp_path / "run" / "metrics.csv", newline="") as handle:
        columns = next(csv.reader(handle))
    assert {options.cls_loss, options.box_loss} <= set(columns)
    saved = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())
    assert (saved["neck"]["type"], saved["head"]["type"], saved["train"]["assigner"]) == (
        neck["type"], head["type"], options.assigner)
    # The checkpoint rebuilds the same head and decodes its boxes the same way: same AP.
    ckpt = load_checkpoint(tmp_path / "run" / "best.pt")
    assert ckpt.recipe == recipe.model
    val = DetectionDataset(CocoDataset(shapes.val_annotations, shapes.val_images), 128)
    torch.manual_seed(0)
    assert evaluate(ckpt.build(), val)["AP"] == pytest.approx(result.best_ap, abs=1e-6)
