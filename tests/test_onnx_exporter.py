"""ONNX written by torch's torch.export-based exporter: detectors of both wraps, with and without
NMS in the graph, and the latency-validation graphs, each run in onnxruntime against torch."""

import sys

import numpy as np
import pytest
import torch

from conftest import space_path
from fuse_helpers import randomise
from tinynas.detect import build_detector, load_model_recipe, parse_model_recipe
from tinynas.errors import UserError
from tinynas.space import load_space

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")

from tinynas.deploy.onnx_export import DetectorWithNMS, compare_with_torch, export_onnx, run_onnx  # noqa: E402
from tinynas.deploy.onnx_trace import IR_VERSION, OPSET  # noqa: E402
from tinynas.nn.reparam import reparameterize  # noqa: E402
from tinynas.latency import onnx_graphs  # noqa: E402

KEPT = 40  # boxes above the score threshold each NMS test starts from


def small_detector(wrap: str, seed: int = 0):
    arch = load_space(space_path("k1kx")).random_arch(seed, steps=15)
    recipe = parse_model_recipe({"backbone": {"arch": arch.to_dicts(), "wrap": wrap},
                                 "neck": {"out_channels": [16, 24, 32], "depth": 1 / 3},
                                 "head": {"num_classes": 3}}, "test")
    torch.manual_seed(seed)
    return randomise(build_detector(recipe), seed)


def image(size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 255


def threshold_between_scores(model, images, rank: int) -> float:
    """A score threshold halfway between the ``rank``-th and next best score, so rounding
    differences between runtimes cannot move a box across it."""
    with torch.no_grad():
        scores = reparameterize(model)(images)[0].flatten()
    top = scores.topk(rank + 1).values
    return float(top[-2:].mean())


@pytest.mark.parametrize("wrap,size", [("res", 320), ("csp", 320), ("res", 640)])
def test_detector_export_matches_torch(wrap, size, tmp_path):
    model = small_detector(wrap)
    out = tmp_path / "model.onnx"
    export_onnx(model, out, size=size)
    graph = onnx.load(out)
    assert graph.ir_version == IR_VERSION and [(o.domain, o.version) for o in graph.opset_import] == [("", OPSET)]
    shape = [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert shape == [1, 3, size, size]
    scores, boxes = run_onnx(out, image(size))
    assert scores.shape == (1, (size // 8) ** 2 * 21 // 16, 3) and boxes.shape[-1] == 4
    assert compare_with_torch(out, model, size, images=image(size)) <= 1e-4


@pytest.mark.parametrize("wrap", ["res", "csp"])
@pytest.mark.parametrize("fused_first", [False, True])
def test_nms_in_the_graph_keeps_what_torch_keeps(wrap, fused_first, tmp_path):
    model = small_detector(wrap, seed=1)
    images = image(320, seed=2)
    conf = threshold_between_scores(model, images, KEPT)
    if fused_first:
        model.fuse()
    out = tmp_path / "nms.onnx"
    export_onnx(model, out, size=320, nms=True, conf_threshold=conf, iou_threshold=0.5, max_detections=10)
    assert [n.op_type for n in onnx.load(out).graph.node].count("NonMaxSuppression") == 1
    (detections,) = run_onnx(out, images)
    assert detections.shape[1] == 7 and 0 < len(detections) <= KEPT
    assert (detections[:, 5] > conf).all()
    per_class = np.unique(detections[:, 6], return_counts=True)[1]
    assert per_class.max() <= 10
    assert compare_with_torch(out, model, 320, nms=True, conf_threshold=conf, iou_threshold=0.5,
                              max_detections=10, images=images) <= 1e-4


def test_nms_module_runs_eagerly_in_torch():
    # The custom operator's Python body is what predict-time callers of DetectorWithNMS get.
    model = small_detector("res", seed=1)
    images = image(320, seed=2)
    conf = threshold_between_scores(model, images, KEPT)
    with torch.no_grad():
        detections = DetectorWithNMS(reparameterize(model), conf, 1.0, 1000).eval()(images)
    # IoU threshold 1 suppresses nothing, so every box above the threshold is kept once.
    assert detections.shape == (KEPT, 7)


def test_latency_detector_graph_is_the_fused_detector():
    recipe = load_model_recipe("tinynas-n")
    graph, inputs = onnx_graphs.detector_graph(recipe, size=128, batch=1, seed=3)
    import onnxruntime as ort
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    got = session.run(None, inputs)
    with torch.no_grad():
        want = onnx_graphs.RawHead(onnx_graphs.seeded_detector(recipe, seed=3))(torch.from_numpy(inputs["x"]))
    want = [t for level in want for t in (level if isinstance(level, (list, tuple)) else [level])]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-4, atol=1e-4 * float(w.abs().max()))


def test_missing_onnxscript_is_a_user_error_before_writing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # makes `import onnxscript` fail
    out = tmp_path / "model.onnx"
    with pytest.raises(UserError) as err:
        export_onnx(small_detector("res"), out, size=64)
    assert (err.value.source, err.value.field) == ("export", "format")
    assert "onnxscript" in str(err.value) and "tinynas[export]" in str(err.value)
    assert not out.exists()
