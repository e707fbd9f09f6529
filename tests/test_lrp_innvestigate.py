"""PRESETS["innvestigate"] reproduces iNNvestigate 2.1.2's analyzers on small CNNs (maps in
tests/fixtures/innvestigate).

The fixtures were made by ``tests/fixtures/innvestigate/make_reference.py`` (TensorFlow + iNNvestigate in a
throw-away environment; see its docstring). Here the same nets are rebuilt in PyTorch from the saved Keras
weights: conv kernels HWIO -> OIHW, inputs and maps NHWC -> NCHW, and the first dense layer after ``Flatten``
gets its input features reordered from Keras' (h, w, c) order to PyTorch's (c, h, w).

A third net has a BatchNorm layer. xaikit merges it into the conv before it (zennit canonizer, exact in the
forward); iNNvestigate 2.1.2 instead applies the analyzer's rule to a "fused" surrogate of the BatchNorm
(``apply_mapping_to_fused_bn_layer``) whose scale is ``gamma / sqrt(variance**2 + eps)`` and whose shift is
``beta - mean / sqrt(variance**2 + eps)``: the variance squared and gamma missing from the shift, so the
surrogate is not the layer's function. The rules that ignore biases and scales per channel (w-square, flat,
z+ fast, epsilon without bias) agree anyway; the others are asserted to differ (strict xfail), and
docs/coming_from.md says so. iNNvestigate 2.1.2 cannot run its gradient-type analyzers on that net at all
(graph-mode placeholder error, stored as ``error/<analyzer>/<target>`` in the fixture), so they are compared on
the other two nets only.

Error measure: ``max |ours - theirs| / max |theirs|`` per input (elementwise relative errors are meaningless
where a map crosses zero). float64: <= 1e-4 as the issue asks (measured: at most 6e-8, the float32 rounding of
``Explanation.raw``); float32 model and inputs: <= 1e-3 (measured: at most 1.3e-4, ``lrp.z_plus_fast``).
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from xaikit.saliency import PRESETS, explain

HERE = Path(__file__).resolve().parent / "fixtures" / "innvestigate"
NETS = ("maxpool", "avgpool")
TARGETS = {"index1": 1, "max": "pred"}
TOL64, TOL32 = 1e-4, 1e-3


pytestmark = pytest.mark.usefixtures("one_thread")


def _conv(ref, name: str, padding: int) -> nn.Conv2d:
    kernel, bias = ref[f"w/{name}/kernel"], ref[f"w/{name}/bias"]
    conv = nn.Conv2d(kernel.shape[2], kernel.shape[3], kernel.shape[:2], padding=padding)
    conv.weight.data = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())  # HWIO -> OIHW
    conv.bias.data = torch.from_numpy(bias.copy())
    return conv


def _dense(ref, name: str, hwc: tuple[int, int, int] | None = None) -> nn.Linear:
    kernel, bias = ref[f"w/{name}/kernel"], ref[f"w/{name}/bias"]
    if hwc is not None:  # Keras flattens NHWC as (h, w, c); PyTorch flattens NCHW as (c, h, w)
        kernel = kernel.reshape(*hwc, -1).transpose(2, 0, 1, 3).reshape(kernel.shape)
    dense = nn.Linear(*kernel.shape)
    dense.weight.data = torch.from_numpy(kernel.T.copy())
    dense.bias.data = torch.from_numpy(bias.copy())
    return dense


def _batchnorm(ref, name: str) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(len(ref[f"w/{name}/gamma"]), eps=1e-3)  # Keras' default epsilon
    for ours, theirs in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                         ("running_var", "moving_variance")):
        getattr(bn, ours).data = torch.from_numpy(ref[f"w/{name}/{theirs}"].copy())
    return bn


def torch_net(kind: str, ref) -> nn.Module:
    """The Keras net of make_reference.py, rebuilt layer by layer (float64, eval mode)."""
    if kind == "batchnorm":
        layers = [_conv(ref, "conv1", 1), _batchnorm(ref, "bn1"), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                  _dense(ref, "fc", (6, 6, 4))]
    elif kind == "maxpool":
        layers = [_conv(ref, "conv1", 1), nn.ReLU(), nn.MaxPool2d(2), _conv(ref, "conv2", 1), nn.ReLU(),
                  nn.Flatten(), _dense(ref, "fc1", (6, 6, 6)), nn.ReLU(), _dense(ref, "fc2")]
    else:
        layers = [_conv(ref, "conv1", 1), nn.ReLU(), nn.AvgPool2d(2), _conv(ref, "conv2", 0), nn.ReLU(),
                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), _dense(ref, "fc")]
    return nn.Sequential(*layers).double().eval()


def load(kind: str):
    ref = dict(np.load(HERE / f"{kind}.npz"))
    x = torch.from_numpy(ref["x"].transpose(0, 3, 1, 2).copy())
    return kind, torch_net(kind, ref), x, ref


@pytest.fixture(scope="module", params=NETS)
def net(request):
    return load(request.param)


@pytest.fixture(scope="module")
def bn_net():
    return load("batchnorm")


def relative_error(ours: torch.Tensor, theirs: np.ndarray) -> float:
    theirs = torch.from_numpy(theirs.transpose(0, 3, 1, 2).copy()).double()
    diff = (ours.double() - theirs).flatten(1).abs().amax(1)
    scale = theirs.flatten(1).abs().amax(1).clamp_min(1e-30)
    return float((diff / scale).max())


def test_rebuilt_nets_reproduce_keras_logits(net, bn_net):
    for kind, model, x, ref in (net, bn_net):
        with torch.no_grad():
            assert np.allclose(model(x).numpy(), ref["logits"], rtol=1e-12, atol=1e-12)


def test_fixtures_cover_every_preset_entry(net):
    kind, model, x, ref = net
    analyzers = {key.split("/")[1] for key in ref if key.startswith("map/")}
    assert analyzers == set(PRESETS["innvestigate"])


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("analyzer", sorted(PRESETS["innvestigate"]))
def test_preset_matches_innvestigate_float64(net, analyzer, target):
    kind, model, x, ref = net
    entry = dict(PRESETS["innvestigate"][analyzer])
    exp = explain(model, x, entry.pop("method"), target=TARGETS[target], **entry)
    err = relative_error(exp.raw, ref[f"map/{analyzer}/{target}"])
    assert err <= TOL64, f"{kind} {analyzer} {target}: relative error {err:.3g}"


@pytest.mark.parametrize("analyzer", sorted(PRESETS["innvestigate"]))
def test_preset_matches_innvestigate_float32(net, analyzer):
    kind, model, x, ref = net
    entry = dict(PRESETS["innvestigate"][analyzer])
    exp = explain(copy.deepcopy(model).float(), x.float(), entry.pop("method"), target=1, **entry)
    err = relative_error(exp.raw, ref[f"map/{analyzer}/index1"])
    assert err <= TOL32, f"{kind} {analyzer} float32: relative error {err:.3g}"


BN_MATCH = {"lrp.w_square", "lrp.flat", "lrp.z_plus_fast", "lrp.epsilon_IB"}  # no bias, scale cancels per channel
BN_GRADIENTS = {"gradient", "input_t_gradient", "deconvnet", "guided_backprop", "integrated_gradients"}
BN_DIFFER = sorted(set(PRESETS["innvestigate"]) - BN_MATCH - BN_GRADIENTS)


def _bn_error(bn_net, analyzer: str, target: str) -> float:
    kind, model, x, ref = bn_net
    entry = dict(PRESETS["innvestigate"][analyzer])
    exp = explain(model, x, entry.pop("method"), target=TARGETS[target], **entry)
    return relative_error(exp.raw, ref[f"map/{analyzer}/{target}"])


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("analyzer", sorted(BN_MATCH))
def test_batchnorm_net_matches_where_the_batchnorm_treatment_cancels(bn_net, analyzer, target):
    assert _bn_error(bn_net, analyzer, target) <= TOL64


@pytest.mark.xfail(strict=True, reason="iNNvestigate applies the rule to a fused BatchNorm surrogate with the variance "
                                       "squared and gamma missing from its shift; xaikit merges BatchNorm into the "
                                       "conv")
@pytest.mark.parametrize("analyzer", BN_DIFFER)
def test_batchnorm_net_differs_for_rules_that_see_the_batchnorm_shift(bn_net, analyzer):
    assert max(_bn_error(bn_net, analyzer, t) for t in TARGETS) <= TOL64


def test_epsilon_gap_on_global_average_pooling_is_the_pooling_stabilizer():
    """Issue 24: ``lrp_epsilon`` on the global-average-pooling net differs from iNNvestigate's ``lrp.epsilon`` by
    about ``stabilizer / |pooled activation|`` (4e-5 here, ~1e-3 where pooled activations are ~1e-3): zennit's
    stabilizer adds 1e-6 sign(z) to every pooling denominator, iNNvestigate's ``safe_divide`` only replaces exact
    zeros. The preset (``stabilizer_kind="zero"``) matches to float32 rounding; so does ``lrp_epsilon`` with a
    negligible stabilizer, and the gap scales with the stabilizer. The max-pooling net has no such division."""
    _, model, x, ref = load("avgpool")
    theirs = ref["map/lrp.epsilon/index1"]
    errors = {s: relative_error(explain(model, x, "lrp_epsilon", 1, epsilon=1e-7, stabilizer=s).raw, theirs)
              for s in (1e-6, 1e-7, 1e-12)}
    assert 1e-5 < errors[1e-6] < 1e-3 and 5 < errors[1e-6] / errors[1e-7] < 20
    assert errors[1e-12] <= 1e-7
    entry = dict(PRESETS["innvestigate"]["lrp.epsilon"])
    assert relative_error(explain(model, x, entry.pop("method"), 1, **entry).raw, theirs) <= 1e-7
    _, model, x, ref = load("maxpool")
    assert relative_error(explain(model, x, "lrp_epsilon", 1, epsilon=1e-7).raw, ref["map/lrp.epsilon/index1"]) <= 1e-7
