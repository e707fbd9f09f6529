"""Every registry entry on a tiny CNN and on torchvision models: finite maps of the right shape, model untouched."""
from __future__ import annotations

import pytest
import torch
import torchvision

from xaikit.saliency import METHODS, explain

from saliency_helpers import (
    FAST_LAYER_SAMPLED,
    assert_unchanged,
    small_densenet,
    small_vgg,
    snapshot,
    tiny_cnn,
    tiny_inputs,
)

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = {**FAST_LAYER_SAMPLED, "integrated_gradients": {"n_steps": 4},
        "smoothgrad": {"n_samples": 3}, "smoothgrad_sq": {"n_samples": 3},
        "vargrad": {"n_samples": 3}, "gradient_shap": {"n_samples": 3}, "lime": {"n_samples": 12, "n_segments": 8},
        "kernel_shap": {"n_samples": 12, "n_segments": 8}, "feature_ablation": {"n_segments": 8},
        "occlusion": {"window": 4, "stride": 4}}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_on_tiny_cnn(name):
    model = tiny_cnn(bn=True).float()
    x = tiny_inputs(3).float()
    before = snapshot(model)
    exp = explain(model, x, name, **FAST.get(name, {}))
    assert exp.maps.shape == (3, 8, 8) and exp.maps.dtype == torch.float32
    assert torch.isfinite(exp.maps).all()
    assert exp.method == name and exp.preds.shape == (3,) and exp.probs.shape == (3, 3)
    with torch.no_grad():
        assert torch.equal(exp.preds, model(x).argmax(1))
    assert torch.equal(exp.targets, exp.preds)
    if not METHODS[name].signed:
        assert exp.maps.min() >= -1e-6, f"{name} is registered unsigned but gave negative values"
    assert_unchanged(model, before)


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=2).eval()


RESNET_SKIP = {"scorecam", "lime", "kernel_shap", "feature_ablation", "occlusion"}  # slow; tiny CNN covers them


@pytest.mark.parametrize("name", sorted(set(METHODS) - RESNET_SKIP))
def test_every_method_on_resnet18(resnet, name):
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    before = snapshot(resnet)
    exp = explain(resnet, x, name, **FAST.get(name, {}))
    assert exp.maps.shape == (1, 32, 32) and torch.isfinite(exp.maps).all()
    assert_unchanged(resnet, before)


@pytest.mark.parametrize("arch", [small_vgg, small_densenet])
@pytest.mark.parametrize("name", ["deeplift", "guided_backprop", "gradcam", "lrp_epsilon_plus"])
def test_other_architectures(arch, name):
    model = arch()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    before = snapshot(model)
    exp = explain(model, x, name)
    assert exp.maps.shape == (1, 32, 32) and torch.isfinite(exp.maps).all()
    assert_unchanged(model, before)
