"""Memory layouts: training steps, evaluation and prediction all run NHWC on the CPU; a strided
1x1 conv, whose NHWC weight gradient corrupts the heap in torch 2.13's CPU build, is computed
as the stride-1 conv of its subsampled input."""

import pytest
import torch

from tinynas.detect.detector import Detector
from tinynas.train.recipe import parse_train_recipe
from tinynas.train.trainer import train

from train_helpers import synthetic, tiny_recipe


# One training step of a unit whose RepConv point branch is a 1x1 stride-2 conv of 8 channels at
# 160x160 (a searched k1kx block with btn 8 behind the Focus stem of a 320 image), in its own
# process: in NHWC, torch 2.13's CPU weight gradient of that conv as a strided nn.Conv2d
# corrupts the heap (SIGSEGV); the subsampled form tinynas builds it as must not.
STRIDED_POINT_STEP = """
import pytest
import torch
from tinynas.detect.detector import Detector
from tinynas.detect.model_recipe import parse_model_recipe
recipe = parse_model_recipe({"backbone": {"arch": [
    {"class": "ConvKXBNRELU", "in": 12, "out": 16, "s": 1, "k": 3},
    {"class": "SuperResK1KX", "in": 16, "out": 24, "s": 2, "k": 3, "L": 1, "btn": 8},
    {"class": "SuperResK1KX", "in": 24, "out": 32, "s": 2, "k": 3, "L": 1, "btn": 8},
    {"class": "SuperResK1KX", "in": 32, "out": 48, "s": 2, "k": 3, "L": 1, "btn": 16},
    {"class": "SuperResK1KX", "in": 48, "out": 64, "s": 2, "k": 3, "L": 1, "btn": 16}],
    "wrap": "res", "out_indices": [2, 3, 4], "focus": True, "act": "relu", "reparam": True},
    "neck": {"out_channels": [16, 24, 32]}, "head": {"num_classes": 1}}, "<strided point>")
model = Detector(recipe).train()
images = torch.rand(16, 3, 320, 320)
from tinynas.detect.input_layout import to_training_input
cls_logits, reg_logits = model.head(model.features(to_training_input(images, "cpu")))
(cls_logits.float().pow(2).mean() + reg_logits.float().pow(2).mean()).backward()
print("step done")
"""


def test_a_training_step_through_a_strided_1x1_conv_of_few_channels_does_not_crash():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", STRIDED_POINT_STEP], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0 and "step done" in proc.stdout, (proc.returncode, proc.stderr[-800:])


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


def test_the_trainer_feeds_cpu_steps_nhwc(tmp_path):
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


def test_a_subsampled_point_conv_is_the_strided_conv_it_replaces():
    from torch import nn

    from tinynas.nn.point_conv import SubsampledPointConv, conv2d

    torch.manual_seed(0)
    for size, groups in ((9, 1), (10, 2), (7, 4)):  # odd sizes: the subsample keeps the last row
        plain = nn.Conv2d(8, 12, 1, 2, 0, groups=groups, bias=True)
        sub = conv2d(8, 12, 1, 2, 0, groups=groups, bias=True)
        assert type(sub) is SubsampledPointConv
        sub.load_state_dict(plain.state_dict())
        x = torch.randn(3, 8, size, size, requires_grad=True)
        x_sub = x.detach().clone().requires_grad_(True)
        want, got = plain(x), sub(x_sub)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want)
        want.pow(2).sum().backward()
        got.pow(2).sum().backward()
        torch.testing.assert_close(sub.weight.grad, plain.weight.grad)
        torch.testing.assert_close(sub.bias.grad, plain.bias.grad)
        torch.testing.assert_close(x_sub.grad, x.grad)
    assert type(conv2d(8, 12, 1, 1)) is nn.Conv2d and type(conv2d(8, 12, 3, 2, 1)) is nn.Conv2d


@pytest.mark.parametrize("name", ["tinynas-n", "damoyolo-t", "damoyolo-s", "yolov6-n", "yolox-s"])
def test_no_model_trains_through_a_plain_strided_point_conv(name):
    """Every strided 1x1 conv a training step runs is the subsampled form (the NHWC fault)."""
    from torch import nn

    from tinynas.detect.model_recipe import load_model_recipe

    model = Detector(load_model_recipe(name)).train()
    strided_points = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)
                      and m.stride != (1, 1)]
    assert [type(m).__name__ for m in strided_points if type(m) is nn.Conv2d] == []
    if name in ("tinynas-n", "damoyolo-t", "damoyolo-s"):
        assert strided_points  # their RepConv point branches at every stride-2 block
