"""Directly computed LRP rules (xaikit.saliency.direct_rules) against zennit's rules, and the cached canonized copy."""
from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from zennit.attribution import Gradient
from zennit.composites import (
    EpsilonAlpha2Beta1,
    EpsilonAlpha2Beta1Flat,
    EpsilonPlus,
    EpsilonPlusFlat,
    LayerMapComposite,
    layer_map_base,
)
from zennit.rules import AlphaBeta, Epsilon, Flat, ZPlus
from zennit.types import Linear

from xaikit.saliency import explain
from xaikit.saliency.canonizers import ExactResNetCanonizer, canonized_copy
from xaikit.saliency.direct_rules import (
    DirectAlphaBeta,
    DirectAlphaBetaFullBias,
    DirectEpsilon,
    DirectFlat,
    DirectZPlus,
    direct_supported,
)
from xaikit.saliency.rules import AlphaBetaFullBias, SafeDivide
from xaikit.saliency.safety import state_fingerprint

from saliency_helpers import assert_unchanged, randomize_batchnorm, small_vgg, snapshot

PAIRS = {  # direct rule, the zennit rule it stands for
    "epsilon": (lambda: DirectEpsilon(1e-3), lambda: Epsilon(1e-3)),
    "epsilon_no_bias": (lambda: DirectEpsilon(1e-3, ["bias"]), lambda: Epsilon(1e-3, zero_params=["bias"])),
    "zplus": (lambda: DirectZPlus(1e-6), lambda: ZPlus(1e-6)),
    "zplus_no_bias": (lambda: DirectZPlus(1e-6, "bias"), lambda: ZPlus(1e-6, zero_params="bias")),
    "alpha2beta1": (lambda: DirectAlphaBeta(2, 1, 1e-6), lambda: AlphaBeta(2, 1, 1e-6)),
    "alpha1beta0": (lambda: DirectAlphaBeta(1, 0, 1e-6), lambda: AlphaBeta(1, 0, 1e-6)),
    "alpha3beta2_no_bias": (lambda: DirectAlphaBeta(3, 2, 1e-6, ["bias"]),
                            lambda: AlphaBeta(3, 2, 1e-6, zero_params=["bias"])),
    "flat": (lambda: DirectFlat(1e-6), lambda: Flat(1e-6)),
    "epsilon_safe_divide": (lambda: DirectEpsilon(SafeDivide(1e-7)), lambda: Epsilon(SafeDivide(1e-7))),
    "full_bias_alpha2beta1": (lambda: DirectAlphaBetaFullBias(2, 1, 1e-6), lambda: AlphaBetaFullBias(2, 1, 1e-6)),
    "full_bias_zplus_without_bias": (lambda: DirectAlphaBetaFullBias(1, 0, 1e-6, bias=False),
                                     lambda: AlphaBetaFullBias(1, 0, 1e-6, bias=False)),
}


def layers_net(dims: int) -> nn.Module:
    """Strided, dilated, grouped, padded convolutions of ``dims`` spatial dimensions, then dense layers."""
    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
    torch.manual_seed(dims)
    return nn.Sequential(
        conv(2, 4, 3, padding=1), nn.ReLU(), conv(4, 6, 3, stride=2, padding=2, dilation=2), nn.ReLU(),
        conv(6, 6, 3, padding=1, groups=3, bias=False), nn.Tanh(), nn.Flatten(), nn.LazyLinear(5), nn.ReLU(),
        nn.Linear(5, 3)).double().eval()


def relevance(model, composite, x, target):
    with Gradient(model, composite) as attributor:
        return attributor(x, attr_output=lambda y: F.one_hot(target, y.shape[1]) * y)[1]


def every_layer(rule) -> LayerMapComposite:
    return LayerMapComposite(layer_map_base(1e-6) + [(Linear, rule)])


@pytest.mark.parametrize("signed", [True, False], ids=["mixed_sign_inputs", "nonnegative_inputs"])
@pytest.mark.parametrize("rule,dims", [(rule, 2) for rule in sorted(PAIRS)]
                         + [("alpha2beta1", 1), ("epsilon", 1), ("full_bias_alpha2beta1", 3), ("flat", 3)])
def test_direct_rule_equals_zennit_rule_on_every_layer_kind(rule, dims, signed):
    model = layers_net(dims)
    g = torch.Generator().manual_seed(7)
    x = torch.rand(3, 2, *([10] * dims), generator=g, dtype=torch.float64) - (0.5 if signed else 0.0)
    model(x)  # materialize the lazy layer
    target = torch.tensor([0, 2, 1])
    direct, reference = PAIRS[rule]
    got = relevance(model, every_layer(direct()), x, target)
    want = relevance(model, every_layer(reference()), x, target)
    scale = float(want.detach().abs().max())
    assert scale > 0 and torch.allclose(got, want, rtol=1e-10, atol=1e-12 * scale)


@pytest.mark.parametrize("module", [nn.ConvTranspose2d(2, 2, 3), nn.Conv2d(2, 2, 3, padding="same"),
                                    nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect")],
                         ids=["transposed", "same_padding", "reflect_padding"])
def test_layers_not_computed_directly_get_the_zennit_rule(module):
    assert not direct_supported(module)
    torch.manual_seed(0)
    model = nn.Sequential(module, nn.ReLU(), nn.Flatten(), nn.LazyLinear(3)).double().eval()
    x = torch.rand(2, 2, 6, 6, dtype=torch.float64)
    model(x)
    target = torch.tensor([1, 2])
    got = relevance(model, every_layer(DirectZPlus(1e-6)), x, target)
    assert torch.equal(got, relevance(model, every_layer(ZPlus(1e-6)), x, target))


def tiny_resnet() -> nn.Module:
    from torchvision.models.resnet import BasicBlock, ResNet

    torch.manual_seed(0)
    model = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=3).eval()
    return randomize_batchnorm(model)


@pytest.mark.parametrize("method,composite", [
    ("lrp_epsilon_plus", EpsilonPlus), ("lrp_epsilon_plus_flat", EpsilonPlusFlat),
    ("lrp_epsilon_alpha2_beta1", EpsilonAlpha2Beta1), ("lrp_epsilon_alpha2_beta1_flat", EpsilonAlpha2Beta1Flat)])
@pytest.mark.parametrize("arch", ["resnet", "vgg"])
def test_registered_methods_equal_zennit_composites_on_canonized_models(method, composite, arch):
    from xaikit.saliency.canonizers import ExactSequentialMergeBatchNorm

    model = tiny_resnet() if arch == "resnet" else small_vgg()
    canonizer = ExactResNetCanonizer if arch == "resnet" else ExactSequentialMergeBatchNorm
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    target = torch.tensor([1, 0])
    before = snapshot(model)
    ours = explain(model, x, method, target)
    assert_unchanged(model, before)
    want = relevance(model, composite(epsilon=1e-6, canonizers=[canonizer()]), x, target)
    assert torch.allclose(ours.raw, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))


@pytest.mark.parametrize("arch", ["resnet", "vgg"])
def test_excitation_backprop_equals_zennits_composite_on_canonized_models(arch):
    """Computed with the direct z+ and sum rules: zennit's ExcitationBackprop map (ReLUs keep their gradient)."""
    from zennit.composites import ExcitationBackprop

    from xaikit.saliency.canonizers import ExactSequentialMergeBatchNorm

    model = tiny_resnet() if arch == "resnet" else small_vgg()
    canonizer = ExactResNetCanonizer if arch == "resnet" else ExactSequentialMergeBatchNorm
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    target = torch.tensor([0, 1])
    ours = explain(model, x, "excitation_backprop", target)
    want = relevance(model, ExcitationBackprop(canonizers=[canonizer()]), x, target)
    assert float(want.abs().max()) > 0
    assert torch.allclose(ours.raw, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))


def test_canonized_copy_is_cached_per_model_state_and_leaves_the_model_alone():
    model = tiny_resnet()
    x = torch.rand(1, 3, 32, 32)
    before = snapshot(model)
    first, report = canonized_copy(model, x)
    assert first is not model and report["canonizers"] == ["ExactResNetCanonizer"] and not report["unmerged_batchnorm"]
    assert canonized_copy(model, x)[0] is first
    assert_unchanged(model, before)
    with torch.no_grad():
        model.conv1.weight.mul_(2)  # an optimizer step: a new state, a new copy
    assert canonized_copy(model, x)[0] is not first


def test_weights_changed_between_calls_change_the_map():
    """The copy and its cached clamped weights follow the model: in-place steps and ``p.data = ...`` both count."""
    from xaikit.saliency.canonizers import ExactSequentialMergeBatchNorm

    model = small_vgg.__wrapped__()  # a fresh instance: the cached one is shared with other tests
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    target = torch.tensor([0, 1])
    explain(model, x, "lrp_epsilon_alpha2_beta1", target)
    for change in ("in_place", "data", "data_in_place", "data_item"):
        if change == "in_place":
            with torch.no_grad():
                model.features[4].weight.mul_(-1.5)
        elif change == "data":
            model.classifier[0].weight.data = model.classifier[0].weight.data.flip(0).clone()
        elif change == "data_in_place":  # neither version counter nor storage moves (issue 23)
            model.features[0].weight.data.mul_(-2.0)
        else:
            model.classifier[0].weight.data[0] = 0.5
        got = explain(model, x, "lrp_epsilon_alpha2_beta1", target).raw
        want = relevance(model, EpsilonAlpha2Beta1(canonizers=[ExactSequentialMergeBatchNorm()]), x, target)
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-5 * float(want.abs().max())), change


def test_content_fingerprint_sees_edits_through_data_and_clear_caches_empties_every_cache():
    from xaikit.saliency import clear_caches
    from xaikit.saliency.canonizers import _COPIES
    from xaikit.saliency.safety import content_fingerprint

    model = nn.Linear(3, 2)
    before = content_fingerprint(model)
    model.weight.data.mul_(2)
    assert state_fingerprint(model) == before[0] and content_fingerprint(model) != before
    model.weight.data[0, 0] = 7.0
    assert content_fingerprint(model) != before
    vgg = small_vgg.__wrapped__()
    explain(vgg, torch.randn(1, 3, 32, 32), "lrp_epsilon_plus_flat", 0)
    assert vgg in _COPIES
    clear_caches()
    assert vgg not in _COPIES


def test_state_fingerprint_sees_new_data_without_a_version_change():
    model = nn.Linear(3, 2)
    before = state_fingerprint(model)
    model.weight.data = torch.zeros(2, 3)
    assert state_fingerprint(model) != before


def test_direct_rules_keep_the_graph_for_second_order_gradients():
    """create_graph=True through the direct rule (as zennit's rules allow): the relevance is differentiable."""
    model = layers_net(2)
    x = torch.rand(2, 2, 10, 10, dtype=torch.float64)
    model(x)
    with Gradient(model, every_layer(DirectEpsilon(1e-3)), create_graph=True) as attributor:
        _, rel = attributor(x, attr_output=lambda y: F.one_hot(torch.tensor([0, 1]), 3) * y)
    assert rel.requires_grad


@pytest.mark.parametrize("norm_kw", [{}, {"track_running_stats": False}, {"affine": False}],
                         ids=["batchnorm", "no_running_stats", "no_affine"])
def test_excitation_backprop_on_a_train_mode_net_reusing_one_in_place_relu(norm_kw):
    """Issue 23: a train-mode BatchNorm net reusing one ReLU(inplace=True) gave raw errors (in-place on a hooked
    view; zennit's merge of a BatchNorm without running statistics); it runs on the private copy, whose activations
    are out-of-place and whose unmergeable BatchNorms are left alone, with zennit's map on such a copy."""
    from zennit.composites import ExcitationBackprop

    from xaikit.saliency.canonizers import ExactSequentialMergeBatchNorm

    torch.manual_seed(3)
    relu = nn.ReLU(inplace=True)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4, **norm_kw), relu,
                          nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4, **norm_kw), relu,
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).double().train()
    before = snapshot(model)
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    target = torch.tensor([0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # unmerged BatchNorms are announced
        got = explain(model, x, "excitation_backprop", target).raw
    assert_unchanged(model, before)
    assert model.training
    reference = copy.deepcopy(model).eval()
    reference[2].inplace = False
    canonizers = [ExactSequentialMergeBatchNorm()] if not norm_kw else []
    want = relevance(reference, ExcitationBackprop(canonizers=canonizers), x, target)
    torch.testing.assert_close(got, want.float())


def test_alpha_beta_after_a_relu_runs_as_one_stacked_layer(monkeypatch):
    """The stacked path (one forward, one input gradient for both groups) is what the zennit parity above checks
    on layers after a ReLU: the ungrouped convolutions and the dense layers take it, the grouped one does not."""
    from xaikit.saliency.direct_rules import DirectRule

    calls = []
    stacked = DirectRule._stacked_relevance
    monkeypatch.setattr(DirectRule, "_stacked_relevance",
                        lambda self, op, *a: calls.append(type(op.module).__name__) or stacked(self, op, *a))
    model = layers_net(2)
    x = torch.rand(3, 2, 10, 10, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    model(x)
    target = torch.tensor([0, 2, 1])
    got = relevance(model, every_layer(DirectAlphaBeta(2, 1, 1e-6)), x, target)
    assert sorted(calls) == ["Conv2d", "Conv2d", "Linear"]  # the input is >= 0 too; the Linear after Tanh is not
    want = relevance(model, every_layer(AlphaBeta(2, 1, 1e-6)), x, target)
    assert torch.allclose(got, want, rtol=1e-10, atol=1e-12 * float(want.abs().max()))
