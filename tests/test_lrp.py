"""Composable LRP rules, relevance initialization, stabilizers, and every method under torch.no_grad()."""
from __future__ import annotations

import pytest
import torch
from captum.attr import GuidedBackprop
from torch import nn
from zennit.composites import EpsilonPlus, LayerMapComposite, layer_map_base
from zennit.rules import AlphaBeta, Epsilon
from zennit.types import Linear

from xaikit import XaikitError
from xaikit.errors import ExplanationError
from xaikit.saliency import METHODS, explain
from xaikit.saliency.rules import AlphaBetaFullBias, SafeDivide

from saliency_helpers import FAST_LAYER_SAMPLED, assert_unchanged, snapshot, tiny_cnn, tiny_inputs

FAST = {**FAST_LAYER_SAMPLED, "integrated_gradients": {"n_steps": 4},
        "smoothgrad": {"n_samples": 3}, "smoothgrad_sq": {"n_samples": 3},
        "vargrad": {"n_samples": 3}, "gradient_shap": {"n_samples": 3}, "lime": {"n_samples": 12, "n_segments": 8},
        "kernel_shap": {"n_samples": 12, "n_segments": 8}, "feature_ablation": {"n_segments": 8},
        "occlusion": {"window": 4, "stride": 4}}

# Every random method draws from per-image streams seeded by explain(): two calls give the same map.
NOT_REPEATABLE: set = set()


pytestmark = pytest.mark.usefixtures("one_thread")


def plain_cnn() -> nn.Module:
    """Bias-free conv-ReLU-conv-ReLU-dense net without pooling (average pooling drops the relevance that a
    flat or w-square rule gives dead units: its inputs there are all zero)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.ReLU(),
                         nn.Conv2d(4, 6, 3, padding=1, bias=False), nn.ReLU(),
                         nn.Flatten(), nn.Linear(6 * 64, 3, bias=False)).double().eval()


def _logit(model, x, idx):
    with torch.no_grad():
        return model(x).gather(1, idx[:, None])[:, 0]


# --- every method under torch.no_grad() -----------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_works_under_no_grad_and_gives_the_same_map(name):
    model, x = tiny_cnn().float(), tiny_inputs(2).float()
    before = snapshot(model)
    free = explain(model, x, name, **FAST.get(name, {}))
    with torch.no_grad():
        inside = explain(model, x, name, **FAST.get(name, {}))
        assert not torch.is_grad_enabled()  # the method's own enable_grad is scoped
    assert torch.isfinite(inside.maps).all()
    if name not in NOT_REPEATABLE:
        assert torch.allclose(inside.maps, free.maps, rtol=1e-5, atol=1e-6)
    assert_unchanged(model, before)


# --- composable rules ------------------------------------------------------------------------------------
def test_rules_reproduce_the_fixed_zennit_composites():
    model, x = tiny_cnn(), tiny_inputs(3)
    ours = explain(model, x, "lrp", rules={"linear": ("epsilon", {"epsilon": 1e-6})})
    assert torch.equal(ours.raw, explain(model, x, "lrp_epsilon").raw)
    default = explain(model, x, "lrp")
    assert torch.equal(default.raw, ours.raw)


def test_zennit_composite_passed_straight_in():
    model, x = tiny_cnn(), tiny_inputs(3)
    exp = explain(model, x, "lrp", composite=EpsilonPlus(epsilon=1e-6))
    assert torch.equal(exp.raw, explain(model, x, "lrp_epsilon_plus").raw)
    assert exp.params["composite"] == "EpsilonPlus" and exp.params["relevance_init"] == "logit"


def test_module_name_beats_first_beats_type():
    model, x = tiny_cnn(), tiny_inputs(3)
    by_first = explain(model, x, "lrp", rules={"first": "flat", "linear": "epsilon"})
    by_name = explain(model, x, "lrp", rules={"features.0": "flat", "linear": "epsilon"})
    assert torch.equal(by_first.raw, by_name.raw)
    named_over_first = explain(model, x, "lrp", rules={"features.0": "epsilon", "first": "flat", "linear": "epsilon"})
    assert torch.equal(named_over_first.raw, explain(model, x, "lrp", rules={"linear": "epsilon"}).raw)
    assert not torch.allclose(by_first.raw, named_over_first.raw)


def test_rules_recorded_as_plain_data_and_replayable():
    model, x = tiny_cnn(), tiny_inputs(2)
    rules = {"first": "flat", "conv": ("alpha_beta", {"alpha": 2, "beta": 1}), "dense": ("epsilon", {"epsilon": 0.1})}
    exp = explain(model, x, "lrp", rules=rules, bias=False)
    recorded = exp.params["rules"]
    assert recorded["conv"] == ["alpha_beta", {"alpha": 2, "beta": 1}] and recorded["first"] == ["flat", {}]
    assert recorded["avgpool"] == ["norm", {}] and exp.params["bias"] is False
    replay = explain(model, x, "lrp", rules=recorded, bias=False)
    assert torch.equal(replay.raw, exp.raw)


def test_zennit_hook_as_a_rule_value():
    model, x = tiny_cnn(), tiny_inputs(2)
    exp = explain(model, x, "lrp", rules={"linear": Epsilon(epsilon=1e-6)})
    assert torch.equal(exp.raw, explain(model, x, "lrp_epsilon").raw)
    assert exp.params["rules"]["linear"] == "Epsilon"


@pytest.mark.parametrize("params, match", [
    ({"rules": {"linear": "nope"}}, r"rules\['linear'\]: unknown rule 'nope'; known rules: \["),
    ({"rules": {"convs": "z"}}, r"rules key 'convs' is neither a selector .* nor a module of Sequential"),
    ({"rules": {"linear": ("epsilon", {"eps": 1})}}, r"rule 'epsilon' does not accept parameters \['eps'\]"),
    ({"rules": {"linear": ("alpha_beta", {"alpha": 3, "beta": 1})}}, r"alpha - beta must be 1 \(got alpha=3, beta=1\)"),
    ({"rules": {"linear": 3}}, r"rules\['linear'\] = 3 is not a rule"),
    ({"rules": ["z"]}, r"rules must be a dict"),
    ({"rules": {"linear": "z"}, "composite": EpsilonPlus()}, "either rules=... or composite=..., not both"),
    ({"composite": "EpsilonPlus"}, "composite must be a zennit Composite; got str"),
    ({"stabilizer_kind": "clip"}, r"stabilizer_kind='clip' is not known; use one of \['sign', 'zero'\]"),
    ({"stabilizer": 0.0}, "stabilizer must be a positive number"),
    ({"relevance_init": "prob"}, r"relevance_init='prob' is not known; use one of \['logit', 'one_hot', 'softmax'\]"),
])
def test_bad_rules_raise_clear_errors(params, match):
    model, x = tiny_cnn(), tiny_inputs(1)
    with pytest.raises(ExplanationError, match=match) as info:
        explain(model, x, "lrp", **params)
    assert isinstance(info.value, XaikitError)


# --- identities and hand-computed references ----------------------------------------------------------
@pytest.mark.parametrize("rules", [{"linear": "z"}, {"linear": ("epsilon", {"epsilon": 1e-12})}])
def test_lrp0_on_bias_free_relu_net_equals_input_times_gradient(rules):
    model, x = tiny_cnn(bias=False), 30 * tiny_inputs(2)
    lrp = explain(model, x, "lrp", rules=rules, stabilizer=1e-12, stabilizer_kind="zero")
    ixg = explain(model, x, "input_x_gradient")
    assert torch.allclose(lrp.raw, ixg.raw, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("rules", [
    {"linear": ("alpha_beta", {"alpha": 2, "beta": 1})}, {"linear": ("alpha_beta", {"alpha": 1, "beta": 0})},
    {"linear": "zplus"}, {"linear": "zplus_fast"}, {"linear": "flat"}, {"linear": "wsquare"},
    {"first": "flat", "conv": ("alpha_beta", {"alpha": 2, "beta": 1}), "dense": ("epsilon", {"epsilon": 1e-12})},
])
def test_rules_conserve_relevance_on_bias_free_net(rules):
    model, x = plain_cnn(), 30 * tiny_inputs(3)
    exp = explain(model, x, "lrp", rules=rules, target=0, stabilizer=1e-12, stabilizer_kind="zero")
    logit = _logit(model, x, exp.targets)
    assert torch.allclose(exp.raw.double().sum((1, 2, 3)), logit, rtol=1e-5)


def test_full_bias_alpha_beta_equals_zennit_without_bias():
    model, x = tiny_cnn(bias=False), tiny_inputs(2) - 0.5
    ours = LayerMapComposite(layer_map_base() + [(Linear, AlphaBetaFullBias(2.0, 1.0))])
    theirs = LayerMapComposite(layer_map_base() + [(Linear, AlphaBeta(2.0, 1.0))])
    a = explain(model, x, "lrp", composite=ours).raw
    b = explain(model, x, "lrp", composite=theirs).raw
    assert torch.allclose(a, b, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("alpha, beta", [(2.0, 1.0), (1.0, 0.0)])
def test_alpha_beta_on_one_dense_layer_matches_the_formula(alpha, beta, bias):
    """iNNvestigate's alpha-beta by hand: the full bias b = b+ + b- in both denominators."""
    torch.manual_seed(3)
    layer = nn.Linear(5, 3).double()
    model = nn.Sequential(nn.Flatten(), layer).eval()
    x = torch.randn(2, 1, 1, 5, dtype=torch.float64)
    exp = explain(model, x, "lrp", rules={"dense": ("alpha_beta", {"alpha": alpha, "beta": beta})}, bias=bias,
                  target=1, stabilizer=1e-7, stabilizer_kind="zero")
    w, b = layer.weight[1].detach(), layer.bias[1].detach() if bias else torch.tensor(0.0, dtype=torch.float64)
    xs = x.reshape(2, 5)
    xp, xn, wp, wn = xs.clamp(min=0), xs.clamp(max=0), w.clamp(min=0), w.clamp(max=0)
    act, inh = xp * wp + xn * wn, xp * wn + xn * wp
    out = xs @ w + layer.bias[1].detach()
    safe = SafeDivide(1e-7)
    rel = out[:, None] * (alpha * act / safe(act.sum(1, keepdim=True) + b)
                          - beta * inh / safe(inh.sum(1, keepdim=True) + b))
    assert torch.allclose(exp.raw.reshape(2, 5).double(), rel.float().double(), rtol=1e-6, atol=1e-7)


def test_safe_divide_moves_only_zeros():
    z = torch.tensor([-1e-9, 0.0, 2.0])
    assert torch.equal(SafeDivide(1e-7)(z), torch.tensor([-1e-9, 1e-7, 2.0]))


def test_lrp_epsilon_keeps_epsilon_off_the_pooling_stabilizer():
    """epsilon acts on conv/dense only; the average pooling is normalized with ``stabilizer`` (1e-6)."""
    model, x = tiny_cnn(), tiny_inputs(3)
    exp = explain(model, x, "lrp_epsilon", epsilon=0.1)
    want = LayerMapComposite(layer_map_base(1e-6) + [(Linear, Epsilon(epsilon=0.1))])
    assert torch.equal(exp.raw, explain(model, x, "lrp", composite=want).raw)
    old = LayerMapComposite(layer_map_base(0.1) + [(Linear, Epsilon(epsilon=0.1))])
    assert not torch.allclose(exp.raw, explain(model, x, "lrp", composite=old).raw, rtol=1e-3)


# --- relevance initialization -----------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["lrp", "lrp_epsilon_plus", "excitation_backprop"])
def test_relevance_init_scales_lrp_linearly(method):
    model, x = tiny_cnn(), tiny_inputs(3)
    logit = explain(model, x, method, relevance_init="logit")
    one_hot = explain(model, x, method, relevance_init="one_hot")
    soft = explain(model, x, method, relevance_init="softmax")
    score = _logit(model, x, logit.targets).float()
    prob = logit.probs.gather(1, logit.targets[:, None])[:, 0]
    assert torch.allclose(one_hot.raw * score.view(-1, 1, 1, 1), logit.raw, rtol=1e-5, atol=1e-9)
    assert torch.allclose(one_hot.raw * prob.view(-1, 1, 1, 1), soft.raw, rtol=1e-5, atol=1e-9)
    assert (logit.params["relevance_init"], soft.params["relevance_init"]) == ("logit", "softmax")


@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet"])
def test_modified_gradients_take_the_relevance_init(method):
    model, x = tiny_cnn(), tiny_inputs(3)
    default = explain(model, x, method)
    assert default.params["relevance_init"] == "one_hot"
    logit = explain(model, x, method, relevance_init="logit", target=1)
    one_hot = explain(model, x, method, relevance_init="one_hot", target=1)
    score = _logit(model, x, torch.ones(3, dtype=torch.long)).float().view(-1, 1, 1, 1)
    positive = score.flatten() > 0  # a ReLU acts on the backward signal: scaling commutes only for score > 0
    assert positive.any() and (~positive).any()
    assert torch.allclose(logit.raw[positive], (one_hot.raw * score)[positive], rtol=1e-5, atol=1e-9)
    assert not torch.allclose(logit.raw[~positive], (one_hot.raw * score)[~positive], rtol=1e-3)


def test_guided_backprop_one_hot_equals_captum():
    model, x = tiny_cnn(), tiny_inputs(3)
    ours = explain(model, x, "guided_backprop", target=2)
    theirs = GuidedBackprop(model).attribute(x, target=2)
    assert torch.allclose(ours.raw, theirs.float(), rtol=1e-5, atol=1e-8)


def test_softmax_init_needs_a_class_target():
    model, x = tiny_cnn(), tiny_inputs(2)
    with pytest.raises(ExplanationError, match='relevance_init="softmax" needs a class target'):
        explain(model, x, "lrp", target=lambda logits: logits[:, 0] - logits[:, 1], relevance_init="softmax")
