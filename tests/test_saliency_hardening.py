"""Inputs checked before the libraries see them (issue 15): method parameters, input tensors, model outputs, layers."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from torch import nn

from xaikit.errors import ExplanationError, ModelError, XaikitError
from xaikit.saliency import METHODS, explain

from saliency_helpers import assert_unchanged, snapshot, tiny_cnn, tiny_inputs

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def model():
    return tiny_cnn()


@pytest.fixture
def x():
    return tiny_inputs(2)


BAD_PARAMS = [
    ("integrated_gradients", {"n_steps": 0}, "n_steps=0"),
    ("integrated_gradients", {"n_steps": -3}, "an integer from 1 to 2000"),
    ("integrated_gradients", {"n_steps": 2.5}, "an integer from 1"),
    ("integrated_gradients", {"n_steps": True}, "an integer from 1"),
    ("integrated_gradients", {"n_steps": 10**12}, "n x n matrix"),
    ("integrated_gradients", {"integration": "simpson"}, "integration='simpson'"),
    ("integrated_gradients", {"baseline": "zeros"}, "baseline='zeros'"),
    ("integrated_gradients", {"baseline": float("nan")}, "finite number"),
    ("deeplift", {"baseline": "zeros"}, "baseline='zeros'"),
    ("layer_deeplift", {"baseline": [0.0]}, "finite number"),
    ("smoothgrad", {"n_samples": 0}, "n_samples=0"),
    ("smoothgrad_sq", {"noise_level": -0.1}, ">= 0"),
    ("vargrad", {"noise_level": float("inf")}, ">= 0"),
    ("gradient_shap", {"n_samples": 0}, "n_samples=0"),
    ("gradient_shap", {"stdevs": -1.0}, ">= 0"),
    ("occlusion", {"window": 0}, "window=0"),
    ("occlusion", {"window": 9}, "at most the image size"),
    ("occlusion", {"window": 4, "stride": 0}, "stride=0"),
    ("occlusion", {"window": 4, "baseline": "zeros"}, "baseline='zeros'"),
    ("feature_ablation", {"n_segments": 0}, "n_segments=0"),
    ("feature_ablation", {"compactness": 0}, "> 0"),
    ("lime", {"n_segments": 0}, "n_segments=0"),
    ("lime", {"n_samples": 0}, "n_samples=0"),
    ("kernel_shap", {"n_segments": -1}, "an integer from 1"),
    ("occlusion", {"window": 2, "stride": 3}, "stride=3 is larger than window=2"),
]


@pytest.mark.parametrize("method,params,match", BAD_PARAMS, ids=[f"{m}-{list(p)[-1]}" for m, p, _ in BAD_PARAMS])
def test_bad_method_parameters_are_explanation_errors(model, x, method, params, match):
    before = snapshot(model)
    with pytest.raises(ExplanationError) as info:
        explain(model, x, method, **params)
    message = str(info.value)
    assert match in message and repr(method) in message, message
    assert_unchanged(model, before)


def test_every_registered_method_with_a_rule_accepts_its_defaults():
    for name, info in METHODS.items():
        for param in getattr(info.fn, "param_rules", {}):
            assert param in info.defaults or param == "_all", (name, param)


def test_good_parameters_still_work(model, x):
    exp = explain(model, x, "occlusion", window=8, stride=8, baseline=0)
    assert exp.maps.shape == (2, 8, 8)
    exp = explain(model, x, "integrated_gradients", n_steps=2, integration="riemann_trapezoid",
                  baseline=torch.tensor(0.5, dtype=torch.float64))
    assert torch.isfinite(exp.maps).all()


def test_checks_run_before_captum_and_without_assert(model, x, monkeypatch):
    """captum's own guards are ``assert`` statements (gone under ``python -O``): ours must fire first, and be
    real ``raise`` statements."""
    import xaikit.saliency.captum_methods as cm

    class Reached:
        def __init__(self, *args, **kwargs):
            raise AssertionError("captum was reached with a bad parameter")

    monkeypatch.setattr(cm, "IntegratedGradients", Reached)
    monkeypatch.setattr(cm, "Occlusion", Reached)
    with pytest.raises(ExplanationError, match="n_steps=0"):
        explain(model, x, "integrated_gradients", n_steps=0)
    with pytest.raises(ExplanationError, match="window=0"):
        explain(model, x, "occlusion", window=0)
    for module in ("params.py", "engine.py"):
        tree = ast.parse((ROOT / "xaikit" / "saliency" / module).read_text())
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.Assert)], module


class _Wrapped(nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        self.net, self.kind = tiny_cnn(), kind

    def forward(self, x):
        logits = self.net(x)
        return {"tuple": (logits, logits), "dict": {"logits": logits}, "flat": logits[:, 0]}[self.kind]


@pytest.mark.parametrize("kind,match", [("tuple", "returns a tuple"), ("dict", "returns a dict"),
                                        ("flat", "returns shape (1,)")])
def test_models_that_do_not_return_logits(x, kind, match):
    model = _Wrapped(kind)
    before = snapshot(model)
    with pytest.raises(ModelError, match=match.replace("(", r"\(").replace(")", r"\)")):
        explain(model, x, "gradient")
    assert_unchanged(model, before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_input_dtype_must_match_the_weights(model, dtype):
    with pytest.raises(ExplanationError, match=f"inputs are {dtype} but the model's weights are torch.float64"):
        explain(model, tiny_inputs(1).to(dtype), "gradient")


def test_channel_count_must_match_the_model(model):
    with pytest.raises(ExplanationError, match="inputs have 3 channel.*first convolution takes 2"):
        explain(model, torch.rand(1, 3, 8, 8, dtype=torch.float64), "gradient")


def test_a_2d_model_given_a_volume(model):
    with pytest.raises(ModelError, match="2-D model.*volume"):
        explain(model, torch.rand(1, 2, 4, 8, 8, dtype=torch.float64), "gradient")


def test_a_model_that_cannot_take_the_input_size(x):
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 16 * 16, 2)).double()
    with pytest.raises(ModelError, match="cannot run on inputs of shape"):
        explain(model, x, "gradient")


@pytest.mark.parametrize("method", ["gradcam", "layercam", "layer_deeplift"])
def test_cam_layer_naming_a_linear_layer(model, x, method):
    before = snapshot(model)
    with pytest.raises(ModelError, match=r"layer 'fc' \(Linear\) outputs shape \(1, 3\).*e.g. 'pool'"):
        explain(model, x, method, layer="fc")
    assert_unchanged(model, before)


def test_all_errors_are_xaikit_errors():
    assert issubclass(ExplanationError, XaikitError) and issubclass(ModelError, XaikitError)


def test_deeplift_follows_weights_edited_through_data():
    """Issue 23: ``p.data.mul_()`` moves no version counter; the private copy must still be rebuilt."""
    import copy

    model, x = tiny_cnn(), tiny_inputs(2)
    explain(model, x, "deeplift", 0)
    model.features[0].weight.data.mul_(-2.0)
    got = explain(model, x, "deeplift", 0).maps
    fresh = explain(copy.deepcopy(model), x, "deeplift", 0).maps
    torch.testing.assert_close(got, fresh)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_gives_the_same_map_inside_inference_mode(method):
    """Issue 23: explain() inside ``torch.inference_mode()`` leaves it for the computation (gradient, LRP,
    Grad-CAM, IG and deeplift failed there), with the very same maps as outside."""
    model, extra = tiny_cnn(bn=True), ({"window": 4, "stride": 4} if method == "occlusion" else {})
    x = tiny_inputs(2)
    want = explain(model, x, method, 0, **extra).maps
    with torch.inference_mode():
        x_inf = x.clone()
        got = explain(model, x_inf, method, 0, **extra).maps
    assert not got.is_inference() and got.shape == want.shape and torch.isfinite(got).all()
    if method != "gradient_shap":  # gradient_shap differs between two plain calls too (seeding: reported to the lead)
        torch.testing.assert_close(got, want)


def test_a_model_built_inside_inference_mode_is_refused_clearly():
    with torch.inference_mode():
        model = tiny_cnn()
        with pytest.raises(ExplanationError, match="created inside torch.inference_mode"):
            explain(model, tiny_inputs(1), "gradient", 0)


def test_an_all_zero_lime_map_is_announced():
    """Issue 23: LIME's Lasso can zero every superpixel weight; the empty map must not pass for 'nothing matters'."""
    model = tiny_cnn(bn=True).train()
    with pytest.warns(UserWarning, match=r"lime: the surrogate .* weight 0 for 2 of 2 input\(s\).*no evidence"):
        exp = explain(model, tiny_inputs(2), "lime", 0, n_segments=4, n_samples=30)
    assert not exp.maps.any() and model.training


class _InPlaceSideEffect(nn.Module):
    """Relies on an in-place ReLU modifying a tensor it reads later: a copy with out-of-place ReLUs differs."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.relu, self.fc = nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(inplace=True), nn.Linear(3, 2)

    def forward(self, x):
        y = self.conv(x)
        self.relu(y)
        return self.fc(y.mean((2, 3)))


def test_private_copy_is_checked_once_per_copy_and_its_mismatch_raises_every_time():
    bad, x = _InPlaceSideEffect().double(), tiny_inputs(2)
    for _ in range(2):  # errors are not cached
        with pytest.raises(ModelError, match="does not reproduce the model's outputs"):
            explain(bad, x, "guided_backprop", target=1)
    model = tiny_cnn()
    calls = []
    handle = model.register_forward_pre_hook(lambda m, args: calls.append(len(args[0])))
    try:
        first = explain(model, x, "guided_backprop", target=1)
        n_first = len(calls)
        second = explain(model, x, "guided_backprop", target=1)
    finally:
        handle.remove()
    assert n_first >= 1 and len(calls) == n_first  # the second call runs on the copy only: no check forward
    torch.testing.assert_close(first.maps, second.maps)
