"""The CPU training step runs channels-last (NHWC): faster on oneDNN, the same step up to rounding."""

import torch

from tinynas.detect.anchors import anchor_points
from tinynas.detect.detector import Detector
from tinynas.train.losses import DetectionLoss
from tinynas.train.recipe import parse_train_recipe
from tinynas.train.trainer import train

from train_helpers import synthetic, tiny_recipe


def _step(model: Detector, images: torch.Tensor, targets: list[dict]) -> tuple[float, list[torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    feats = model.features(images)
    cls_logits, reg_logits = model.head(feats)
    points, strides = anchor_points([f.shape[-2:] for f in feats], model.head.strides, dtype=images.dtype)
    loss = DetectionLoss(model.num_classes, model.head.reg_max)(cls_logits, reg_logits, points, strides,
                                                               targets)["loss"]
    loss.backward()
    return float(loss.detach()), [p.grad.double() for p in model.parameters()]


def _error(grads: list[torch.Tensor], exact: list[torch.Tensor]) -> list[float]:
    return [float((g - e).norm() / e.norm().clamp(min=1e-30)) for g, e in zip(grads, exact)]


def test_an_nhwc_step_is_as_exact_as_the_nchw_step(tmp_path):
    """Loss and every gradient of one training step (tiny detector, assigner and losses included)
    against the same step in float64: NHWC's float32 rounding is no larger than NCHW's."""
    data = synthetic(tmp_path, images=1, val_images=1, size=96)
    recipe = parse_train_recipe(tiny_recipe(data, tmp_path / "run", 96, epochs=1)).model
    torch.manual_seed(0)
    model = Detector(recipe).train()
    images = torch.rand(4, 3, 96, 96)
    targets = [{"boxes": torch.tensor([[8.0 + 5 * i, 10.0, 50.0, 60.0 + 4 * i], [60.0, 40.0, 90.0, 88.0]]),
                "labels": torch.tensor([0, len(data.classes) - 1])} for i in range(4)]
    state = {k: v.clone() for k, v in model.state_dict().items()}  # BN running stats move in each step
    nchw_loss, nchw_grads = _step(model, images, targets)
    model.load_state_dict(state)
    nhwc_loss, nhwc_grads = _step(model, images.contiguous(memory_format=torch.channels_last), targets)
    model.load_state_dict(state)
    exact_loss, exact_grads = _step(model.double(), images.double(),
                                    [{**t, "boxes": t["boxes"].double()} for t in targets])
    nchw_error, nhwc_error = _error(nchw_grads, exact_grads), _error(nhwc_grads, exact_grads)
    assert abs(nhwc_loss - exact_loss) <= 1e-5 * exact_loss and abs(nchw_loss - exact_loss) <= 1e-5 * exact_loss
    assert max(nhwc_error) <= 1.5 * max(nchw_error)
    assert max(nhwc_error) < 1e-2  # a layout mistake (a view over NHWC memory) is off by O(1)


class LayoutProbe:
    """An extra-loss term that adds nothing and records the layout of the images each step saw."""

    name = "probe"

    def __init__(self):
        self.channels_last: list[bool] = []

    def attach(self, student, device, amp):
        return None

    def loss(self, step):
        self.channels_last.append(step.images.is_contiguous(memory_format=torch.channels_last))
        return None

    def weight(self, step, loss, detection_loss, loss_scale):
        return 0.0

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_the_trainer_feeds_cpu_steps_channels_last(tmp_path):
    data = synthetic(tmp_path, images=8, val_images=2, size=64)
    probe = LayoutProbe()
    train(parse_train_recipe(tiny_recipe(data, tmp_path / "run", 64, epochs=1, batch_size=4)), progress=False,
          extra_loss=probe)
    assert probe.channels_last == [True, True]


def test_evaluation_and_prediction_feed_the_same_cpu_layout(tmp_path):
    """The same batch must give the same scores in eval and predict: both enter the model NHWC."""
    from torch import nn

    from tinynas.data import CocoDataset, DetectionDataset
    from tinynas.detect.predict import detect_batch
    from tinynas.train.evaluate import predict_split

    data = synthetic(tmp_path, images=1, val_images=4, size=64)
    torch.manual_seed(0)
    detector = Detector(parse_train_recipe(tiny_recipe(data, tmp_path / "run", 64, epochs=1)).model).eval()
    seen = []

    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.detector = detector

        def forward(self, images):
            seen.append(images.is_contiguous(memory_format=torch.channels_last))
            return self.detector(images)

    val = DetectionDataset(CocoDataset(data.val_annotations, data.val_images), 64, train=False)
    predict_split(Recorder(), val, batch_size=2)
    detect_batch(Recorder(), [val.sample(0)[0].image], size=64)
    assert seen == [True, True, True]  # two eval batches of two, one predict batch
