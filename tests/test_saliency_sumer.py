"""Sümer et al. (2023)'s method definitions as options, each against the library called directly (float64)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from captum.attr import LayerAttribution, LayerGradCam
from zennit.attribution import IntegratedGradients, SmoothGrad

from xaikit.errors import ExplanationError
from xaikit.saliency import PRESETS, explain

from saliency_helpers import assert_unchanged, snapshot, tiny_cnn, tiny_inputs


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _one_hot(target, classes=3):
    """zennit's output gradient for the target logit (one-hot; not times the logit as LRP starts)."""
    return lambda y: F.one_hot(target, classes).to(y)


def _captum_cam(model, x, target):
    signed = LayerGradCam(model, model.pool).attribute(x, target=target, relu_attributions=False)
    return LayerAttribution.interpolate(signed, tuple(x.shape[2:]), interpolate_mode="bilinear")[:, 0]


def test_gradcam_abs_and_unit_mass_match_captum():
    """On the 4 x 4 pooled layer of an 8 x 8 input, so that the upsampling is part of what is compared."""
    model, x, target = tiny_cnn(), tiny_inputs(3), torch.tensor([0, 2, 1])
    up_abs = LayerAttribution.interpolate(
        LayerGradCam(model, model.pool).attribute(x, target=target, relu_attributions=False).abs(),
        tuple(x.shape[2:]), interpolate_mode="bilinear")[:, 0]
    got = explain(model, x, "gradcam", target=target, layer="pool", rectify="abs")
    assert torch.allclose(got.maps.double(), up_abs, atol=1e-6)
    assert not torch.allclose(got.maps.double(), _captum_cam(model, x, target).clamp_min(0), atol=1e-6)  # |CAM| != ReLU
    unit = explain(model, x, "gradcam", target=target, layer="pool", rectify="abs", normalize="sum")
    assert torch.allclose(unit.maps.double(), up_abs / up_abs.sum((1, 2), keepdim=True), atol=1e-7)
    assert torch.allclose(unit.maps.double().sum((1, 2)), torch.ones(3, dtype=torch.float64), atol=1e-5)
    assert unit.params["rectify"] == "abs" and unit.params["normalize"] == "sum"
    assert unit.raw.shape == (3, 1, 8, 8) and (unit.raw < 0).any()  # the signed CAM stays in raw
    default = explain(model, x, "gradcam", target=target, layer="pool")
    assert default.params["rectify"] == "relu" and default.params["normalize"] == "none"


def test_integrated_gradients_right_riemann_matches_zennit():
    model, x, target = tiny_cnn(), tiny_inputs(2), torch.tensor([1, 2])
    got = explain(model, x, "integrated_gradients", target=target, n_steps=20, integration="riemann_right")
    with IntegratedGradients(model, n_iter=20) as attributor:   # zero baseline, alphas 1/20 ... 1
        _, rel = attributor(x.clone(), attr_output=_one_hot(target))
    assert torch.allclose(got.raw.double(), rel, atol=1e-6)
    assert got.params["integration"] == "riemann_right"
    gauss = explain(model, x, "integrated_gradients", target=target, n_steps=20)
    assert not torch.allclose(gauss.raw.double(), rel, atol=1e-6)        # the default quadrature differs


def test_smoothgrad_clean_sample_matches_zennit(monkeypatch):
    """zennit draws ``randn_like`` for all but its last (clean) sample: replay xaikit's draws into it."""
    model, x, target = tiny_cnn(), tiny_inputs(2), torch.tensor([0, 1])
    draws, real_randn = [], torch.randn

    def recording_randn(*args, **kwargs):
        out = real_randn(*args, **kwargs)
        draws.append(out)
        return out

    monkeypatch.setattr(torch, "randn", recording_randn)
    got = explain(model, x, "smoothgrad", target=target, n_samples=5, noise_level=0.2, clean_sample=True)
    monkeypatch.setattr(torch, "randn", real_randn)
    assert len(draws) == 4 * len(x)                                      # 4 noisy samples x 2 images, 1 clean
    replay = iter(torch.stack(draws).view(4, *x.shape))
    monkeypatch.setattr(torch, "randn_like", lambda t, **kw: next(replay))
    with SmoothGrad(model, noise_level=0.2, n_iter=5) as attributor:
        _, rel = attributor(x.clone(), attr_output=_one_hot(target))
    assert torch.allclose(got.raw.double(), rel, atol=1e-6)
    assert got.params["clean_sample"] is True


def test_smoothgrad_clean_sample_identities():
    model, x = tiny_cnn(), tiny_inputs(2)
    one = explain(model, x, "smoothgrad", target=1, n_samples=1, noise_level=0.5, clean_sample=True)
    assert torch.allclose(one.raw, explain(model, x, "gradient", target=1).raw, atol=1e-6)  # zennit's n_iter=1
    noisy = explain(model, x, "smoothgrad", target=1, n_samples=3, noise_level=0.5, seed=2)
    mixed = explain(model, x, "smoothgrad", target=1, n_samples=4, noise_level=0.5, seed=2, clean_sample=True,
                    memory_budget=60_000)                                 # chunked: same draws, same result
    grad = explain(model, x, "gradient", target=1).raw
    assert torch.allclose(mixed.raw, (3 * noisy.raw + grad) / 4, atol=1e-6)


@pytest.mark.parametrize("method,params,match", [
    ("smoothgrad", {"clean_sample": "yes"}, "clean_sample='yes' is not valid; clean_sample must be True or False"),
    ("smoothgrad", {"clean_sample": 1}, "True or False"),
    ("gradcam", {"rectify": "square"}, "rectify='square' is not valid; rectify must be one of ['relu', 'abs']"),
    ("gradcam", {"normalize": "max"}, "normalize='max' is not valid; normalize must be one of ['none', 'sum']"),
])
def test_new_options_are_checked(method, params, match):
    model, x = tiny_cnn(), tiny_inputs(2)
    before = snapshot(model)
    with pytest.raises(ExplanationError, match=match.replace("[", r"\[").replace("]", r"\]")):
        explain(model, x, method, **params)
    assert_unchanged(model, before)


def test_sumer2023_preset_uses_the_paper_definitions():
    model, x = tiny_cnn(), tiny_inputs(2)
    preset = PRESETS["sumer2023"]
    assert preset["integrated_gradients"]["integration"] == "riemann_right"
    assert preset["smoothgrad"]["clean_sample"] is True
    for label in ("gradcam", "integrated_gradients", "smoothgrad"):
        params = {k: v for k, v in preset[label].items() if k != "method"}
        exp = explain(model, x, preset[label]["method"], target=0, **{**params, "n_samples": 2}
                      if label == "smoothgrad" else params)
        assert all(exp.params[k] == v for k, v in params.items() if k != "n_samples"), (label, exp.params)
    cam = explain(model, x, "gradcam", target=0, **{k: v for k, v in preset["gradcam"].items() if k != "method"})
    assert torch.allclose(cam.maps.sum((1, 2)), torch.ones(2), atol=1e-5)
