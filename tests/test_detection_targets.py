"""Detection targets on torchvision detectors: the target is the model's own box score, gradients match autograd,
every method either explains a detection or says why not, bad input raises and leaves the model unchanged."""
from __future__ import annotations

import functools

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import MultiScaleRoIAlign

from xaikit.errors import ExplanationError, ModelError
from xaikit.saliency import METHODS, explain, targets
from xaikit.saliency.detection import UNSUPPORTED, DetectionOutputs, supports

from saliency_helpers import FAST_LAYER_SAMPLED, assert_unchanged, snapshot

pytestmark = pytest.mark.usefixtures("one_thread")


@functools.lru_cache(maxsize=None)
def tiny_faster_rcnn() -> FasterRCNN:
    """Faster R-CNN on a two-conv backbone with few proposals: the torchvision pipeline at a fraction of the cost."""
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                             nn.ReLU())
    backbone.out_channels = 8
    anchors = AnchorGenerator(sizes=((8, 16),), aspect_ratios=((0.5, 1.0, 2.0),))
    pooler = MultiScaleRoIAlign(featmap_names=["0"], output_size=4, sampling_ratio=2)
    return FasterRCNN(backbone, num_classes=3, min_size=32, max_size=32, rpn_anchor_generator=anchors,
                      box_roi_pool=pooler, rpn_pre_nms_top_n_test=30,
                      rpn_post_nms_top_n_test=10, box_detections_per_img=5, box_score_thresh=0.0,
                      representation_size=16).eval()


DETECTORS = {
    "faster_rcnn": lambda: torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, num_classes=3, min_size=64, max_size=64),
    "retinanet": lambda: torchvision.models.detection.retinanet_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=3, min_size=64, max_size=64, score_thresh=1e-3,
        detections_per_img=10, topk_candidates=50),
    "fcos": lambda: torchvision.models.detection.fcos_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=3, min_size=64, max_size=64, score_thresh=1e-3,
        detections_per_img=10, topk_candidates=50),
    "ssdlite": lambda: torchvision.models.detection.ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=3, detections_per_img=10),
}


def images(n: int = 2, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("arch", sorted(DETECTORS))
def test_target_score_is_the_models_own_box_score_and_gradient_is_its_autograd_gradient(arch):
    torch.manual_seed(0)
    det = DETECTORS[arch]().eval()
    x = images(1, 64)
    with torch.no_grad():
        out = det(list(x))[0]
    assert len(out["scores"]) > 1
    j = 1
    target = targets.detection(index=j)
    wrapped = target.prepare(det)
    with torch.no_grad():
        dense = wrapped(x)
    bound = target.bind(dense)
    assert float(bound(dense)) == pytest.approx(float(out["scores"][j]), rel=1e-6)
    assert bound.targets.tolist() == [int(out["labels"][j])]
    by_box = targets.detection(box=out["boxes"][j].tolist(), label=int(out["labels"][j])).bind(dense)
    torch.testing.assert_close(by_box.boxes, bound.boxes)
    leaf = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(det(list(leaf))[0]["scores"][j], leaf)
    exp = explain(det, x, "gradient", target)
    torch.testing.assert_close(exp.raw, grad, rtol=1e-4, atol=1e-6 * float(grad.abs().max()))
    assert exp.target_policy == "detection" and exp.targets.tolist() == [int(out["labels"][j])]


def test_box_coordinate_output_and_selection_by_class():
    det, x = tiny_faster_rcnn(), images()
    with torch.no_grad():
        outs = det(list(x))
    label = int(outs[0]["labels"][0])
    for output, col in (("x0", 0), ("y1", 3)):
        target = targets.detection(label=label, output=output) if all(
            (o["labels"] == label).any() for o in outs) else targets.detection(index=0, output=output)
        dense = target.prepare(det)(x)
        bound = target.bind(dense)
        chosen = [int(torch.nonzero(o["boxes"][:, col] == v).flatten()[0]) for o, v in zip(outs, bound(dense))]
        assert all(float(o["scores"][c]) == float(o["scores"][c]) for o, c in zip(outs, chosen))
        torch.testing.assert_close(bound(dense), bound.boxes[:, col])


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_explains_a_detection_or_says_which_do(name):
    det, x = tiny_faster_rcnn(), images()
    before = snapshot(det)
    fast = {**FAST_LAYER_SAMPLED, "integrated_gradients": {"n_steps": 4},
            "smoothgrad": {"n_samples": 2}, "smoothgrad_sq": {"n_samples": 2},
            "vargrad": {"n_samples": 2}, "gradient_shap": {"n_samples": 2}, "lime": {"n_samples": 8, "n_segments": 6},
            "kernel_shap": {"n_samples": 8, "n_segments": 6}, "feature_ablation": {"n_segments": 6},
            "occlusion": {"window": 16, "stride": 16}}.get(name, {})
    if supports(METHODS[name]) is None:
        exp = explain(det, x, name, targets.detection(index=0), **fast)
        assert exp.maps.shape == (2, 32, 32) and torch.isfinite(exp.maps).all()
        if METHODS[name].needs_layer:
            assert exp.params["layer"].startswith("detector.backbone.")
    else:
        with pytest.raises(ExplanationError, match=f"method '{name}' cannot explain detections: .*Use a gradient"):
            explain(det, x, name, targets.detection(index=0), **fast)
    assert_unchanged(det, before)


def test_unsupported_table_names_real_methods():
    assert set(UNSUPPORTED) <= set(METHODS)
    assert all(supports(METHODS[m]) for m in METHODS if METHODS[m].family == "lrp")


@pytest.mark.parametrize("make_target, match", [
    (lambda: targets.detection(index=50), r"index=50 but image 0 has only \d+ detection"),
    (lambda: targets.detection(label=7), "image 0 has no detection of class 7"),
    (lambda: targets.detection(box=(200, 200, 210, 210)), "no detection of image 0 overlaps box"),
    (lambda: 0, "returns outputs of 3 dimensions|list"),
])
def test_bad_detection_targets(make_target, match):
    det, x = tiny_faster_rcnn(), images()
    before = snapshot(det)
    with pytest.raises((ExplanationError, ModelError, AttributeError), match=match):
        explain(det, x, "gradient", make_target())
    assert_unchanged(det, before)


def test_no_detections_and_training_mode_are_clear_errors():
    det, x = tiny_faster_rcnn(), images()
    det.roi_heads.score_thresh = 1.1  # nothing passes
    try:
        with pytest.raises(ExplanationError, match="image 0 has no detections; nothing to explain"):
            explain(det, x, "gradient", targets.detection(index=0))
    finally:
        det.roi_heads.score_thresh = 0.0
    det.train()
    before = snapshot(det)
    try:
        with pytest.raises(ModelError, match="is in training mode, where torchvision detectors return losses"):
            explain(det, x, "gradient", targets.detection(index=0))
        assert_unchanged(det, before)
    finally:
        det.eval()


def test_bad_helper_arguments():
    with pytest.raises(ExplanationError, match="index must be a non-negative int"):
        targets.detection(index=-1)
    with pytest.raises(ExplanationError, match="output='w' is not known"):
        targets.detection(output="w")
    with pytest.raises(ModelError, match="did not return a list of detections"):
        DetectionOutputs(nn.Identity())(images())
