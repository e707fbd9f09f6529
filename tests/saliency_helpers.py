"""Tiny seeded models and model-state checks shared by the saliency tests."""
from __future__ import annotations

import functools

import torch
from torch import nn

from xaikit.saliency.safety import HOOK_DICTS

#: Small settings of the layer, path and sampling methods for the registry-wide tests (their defaults are sized
#: for real images; these keep each test call at a few forwards).
FAST_LAYER_SAMPLED = {
    "layer_conductance": {"n_steps": 4}, "internal_influence": {"n_steps": 4},
    "layer_integrated_gradients": {"n_steps": 4},
    "layer_gradient_shap": {"n_samples": 2}, "expected_gradients": {"n_samples": 2}, "rise": {"n_masks": 8, "grid": 4},
    "shapley_value_sampling": {"n_samples": 1, "n_segments": 4},
    "linear_approximation": {"n_samples": 8, "n_segments": 6},
}


@functools.lru_cache(maxsize=None)
def small_vgg() -> nn.Module:
    """A torchvision VGG (with BatchNorm) with few channels: same classes and canonizer as vgg11_bn."""
    from torchvision.models.vgg import VGG, make_layers

    torch.manual_seed(0)
    model = VGG(make_layers([8, "M", 16, "M"], batch_norm=True), num_classes=2)
    model.classifier = nn.Sequential(nn.Linear(16 * 7 * 7, 16), nn.ReLU(inplace=True), nn.Linear(16, 2))
    return model.eval()


@functools.lru_cache(maxsize=None)
def small_densenet() -> nn.Module:
    """A torchvision DenseNet with two short blocks: the DenseNet-121 structure at a fraction of the cost."""
    from torchvision.models import DenseNet

    torch.manual_seed(0)
    return DenseNet(growth_rate=8, block_config=(2, 2), num_init_features=8, bn_size=2, num_classes=2).eval()


def tiny_cnn(bias: bool = True, bn: bool = False, classes: int = 3, seed: int = 0, dtype=torch.float64) -> nn.Module:
    """conv-relu-conv-relu (features, 8x8) -> avgpool -> linear; optional BatchNorm after each conv."""
    torch.manual_seed(seed)
    layers = [nn.Conv2d(2, 4, 3, padding=1, bias=bias)]
    layers += [nn.BatchNorm2d(4)] if bn else []
    layers += [nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1, bias=bias)]
    layers += [nn.BatchNorm2d(6)] if bn else []
    layers += [nn.ReLU()]
    model = nn.Sequential()
    model.add_module("features", nn.Sequential(*layers))
    model.add_module("pool", nn.AvgPool2d(2))
    model.add_module("flatten", nn.Flatten())
    model.add_module("fc", nn.Linear(6 * 4 * 4, classes, bias=bias))
    if bn:
        randomize_batchnorm(model)
    return model.to(dtype).eval()


def randomize_batchnorm(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine terms (fresh ones are an identity that hides merge errors)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    return model


def tiny_inputs(n: int = 2, seed: int = 1, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 2, 8, 8, generator=g, dtype=dtype)


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "modes": [m.training for m in model.modules()],
        "grads": [p.requires_grad for p in model.parameters()],
        "forwards": [m.forward for m in model.modules()],
        "children": [tuple(n for n, _ in m.named_children()) for m in model.modules()],
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    hooks = [(type(m).__name__, d) for m in model.modules() for d in HOOK_DICTS if len(getattr(m, d, {}))]
    assert not hooks, f"hooks left behind: {hooks}"
    after = snapshot(model)
    assert after["modes"] == before["modes"]
    assert after["grads"] == before["grads"]
    assert after["children"] == before["children"]
    assert all("forward" not in vars(m) for m in model.modules()), "an instance-level forward was left behind"
    assert before["state"].keys() == after["state"].keys()
    for k, v in before["state"].items():
        assert torch.equal(v, after["state"][k]), f"{k} changed"
