"""Layer-wise relevance propagation and relatives, backed by zennit composites and our canonizers.

``"lrp"`` composes rules per layer (see :mod:`xaikit.saliency.rules`) or takes a zennit ``Composite``;
the other methods are fixed zennit composites. The relevance put on the output is chosen by
``relevance_init`` (:data:`~xaikit.saliency.targets.RELEVANCE_INITS`, recorded in ``Explanation.params``);
the default ``"logit"`` is the target score itself (one-hot x logit, as iNNvestigate; zennit's own examples use
the bare one-hot, whose relevance sums to 1). So relevance sums to the explained logit as integrated gradients
does, and for LRP-0 on a bias-free ReLU network the input relevance equals input x gradient. Every method
runs with gradients enabled inside (scoped), so it also works under ``torch.no_grad()``.
Montavon et al. 2019, "Layer-wise relevance propagation: an overview"; Kohlbrenner et al. 2020 (flat/plus
composites); Zhang et al. 2016 (excitation backprop).
"""
from __future__ import annotations

import functools
from typing import Mapping

import torch
from zennit.attribution import Gradient
from zennit.composites import (
    EpsilonGammaBox,
    LayerMapComposite,
    SpecialFirstLayerMapComposite,
)
from zennit.core import Composite, Hook
from zennit.layer import Sum
from zennit.rules import Norm
from zennit.types import AvgPool, Convolution, Linear

from ..errors import ExplanationError
from .canonizers import canonized_copy
from .direct_rules import (
    DirectAlphaBeta,
    DirectEpsilon,
    DirectFlat,
    DirectSumNorm,
    DirectZPlus,
    direct_layer_map_base,
)
from .registry import register
from .rules import rule_composite, stabilizer_fn
from .targets import check_relevance_init

__all__: list[str] = []


def _attribute(ctx, composite, relevance_init: str = "logit") -> torch.Tensor:
    """Run zennit's Gradient attributor with ``composite`` on the canonized model; one forward+modified backward.

    The canonized model is a private copy cached per model state (:func:`canonized_copy`): the user's model is
    not touched and the BatchNorm merge is not redone per call. Gradients are enabled inside (zennit needs them;
    callers often sit in ``torch.no_grad()``).
    """
    init = functools.partial(ctx.spec.relevance, init=check_relevance_init(relevance_init))
    model, report = canonized_copy(ctx.model, ctx.inputs)
    with torch.enable_grad(), Gradient(model, composite) as attributor:
        logits, relevance = attributor(ctx.inputs, attr_output=init)
    ctx.store["logits"] = logits.detach()
    ctx.record["canonization"] = report
    return relevance


def _composite(stabilizer: float, conv: Hook, dense: Hook, first: Hook | None = None) -> Composite:
    """zennit's built-in composites (EpsilonPlus, EpsilonAlpha2Beta1 and their Flat variants) with the rules
    computed directly (:mod:`.direct_rules`): the same layer map, the same maps, about half the work."""
    layer_map = direct_layer_map_base(stabilizer) + [(Convolution, conv), (torch.nn.Linear, dense)]
    if first is None:
        return LayerMapComposite(layer_map)
    return SpecialFirstLayerMapComposite(layer_map, [(Linear, first)])


_LRP = {"family": "lrp", "library": "zennit", "cost": 2, "clean_forward": True, "supports_3d": True}


@register("lrp", **_LRP)
def lrp(ctx, rules: Mapping | None = None, composite: Composite | None = None, bias: bool = True,
        stabilizer: float = 1e-6, stabilizer_kind: str = "sign", relevance_init: str = "logit"):
    """LRP with rules composed per layer (``rules={"first": "flat", "conv": ("alpha_beta", {...}), ...}``).

    ``rules`` maps selectors (``"first"``, ``"conv"``, ``"dense"``, ``"linear"``, ``"avgpool"``, ``"sum"``,
    ``"activation"``, ``"batchnorm"`` or a dotted module name) to rules of :data:`xaikit.saliency.rules.RULES`
    (default: LRP-epsilon, epsilon 1e-6, on every conv/dense layer). ``bias`` is the default bias treatment
    of rules that have one (``False``: iNNvestigate's "IB" variants); ``stabilizer``/``stabilizer_kind`` keep
    the divisions of every rule except ``epsilon`` finite (``"sign"``: zennit's, ``"zero"``: iNNvestigate's
    safe divide). Or pass a ready zennit ``composite=`` (then ``rules``, ``bias`` and the stabilizer are
    not used; its class name is recorded).

    Examples
    --------
    >>> import torch, torchvision
    >>> from xaikit.saliency import explain
    >>> net = torchvision.models.vgg11(num_classes=2).eval()
    >>> exp = explain(net, torch.rand(1, 3, 32, 32), "lrp", rules={"first": "flat", "dense": "epsilon",
    ...               "conv": ("alpha_beta", {"alpha": 2, "beta": 1})})  # doctest: +SKIP
    >>> exp.params["rules"]["conv"]  # doctest: +SKIP
    ['alpha_beta', {'alpha': 2, 'beta': 1}]
    """
    if composite is not None:
        if rules is not None:
            raise ExplanationError("lrp: give either rules=... or composite=..., not both.")
        if not isinstance(composite, Composite):
            raise ExplanationError(f"lrp: composite must be a zennit Composite; got {type(composite).__name__}.")
        ctx.record["composite"] = type(composite).__name__
        return _attribute(ctx, composite, relevance_init)
    if rules is None:
        rules = {"linear": ("epsilon", {"epsilon": 1e-6})}
    built, record = rule_composite(ctx.model, rules, bool(bias), stabilizer, stabilizer_kind)
    ctx.record["rules"] = record
    return _attribute(ctx, built, relevance_init)


@register("lrp_epsilon", **_LRP)
def lrp_epsilon(ctx, epsilon=1e-6, stabilizer=1e-6, relevance_init="logit"):
    """LRP-epsilon on every linear/conv layer (LRP-0 as epsilon -> 0); sums and pools use ``stabilizer``."""
    stab = stabilizer_fn(stabilizer, "sign")
    composite = LayerMapComposite(direct_layer_map_base(stab) + [(Linear, DirectEpsilon(epsilon=float(epsilon)))])
    return _attribute(ctx, composite, relevance_init)


@register("lrp_zplus", **_LRP, signed=False)
def lrp_zplus(ctx, stabilizer=1e-6, relevance_init="logit"):
    """zennit's LRP-z+ on every linear/conv layer (only positive contributions; positive bias in the denominator)."""
    stab = stabilizer_fn(stabilizer, "sign")
    composite = LayerMapComposite(direct_layer_map_base(stab) + [(Linear, DirectZPlus(stabilizer=stab))])
    return _attribute(ctx, composite, relevance_init)


@register("lrp_epsilon_plus", **_LRP)
def lrp_epsilon_plus(ctx, epsilon=1e-6, relevance_init="logit"):
    """zennit EpsilonPlus: z+ for convolutions, epsilon for dense layers."""
    return _attribute(ctx, _composite(1e-6, DirectZPlus(1e-6), DirectEpsilon(float(epsilon))), relevance_init)


@register("lrp_epsilon_plus_flat", **_LRP)
def lrp_epsilon_plus_flat(ctx, epsilon=1e-6, relevance_init="logit"):
    """zennit EpsilonPlusFlat: flat rule on the first layer, z+ for convolutions, epsilon for dense layers."""
    composite = _composite(1e-6, DirectZPlus(1e-6), DirectEpsilon(float(epsilon)), first=DirectFlat(1e-6))
    return _attribute(ctx, composite, relevance_init)


@register("lrp_epsilon_gamma_box", **_LRP)
def lrp_epsilon_gamma_box(ctx, epsilon=1e-6, gamma=0.25, low=None, high=None, relevance_init="logit"):
    """zennit EpsilonGammaBox: z-box first layer within [low, high] (default: the inputs' range), gamma, epsilon."""
    lo = float(ctx.inputs.min()) if low is None else float(low)
    hi = float(ctx.inputs.max()) if high is None else float(high)
    ctx.record.update(box_low=lo, box_high=hi)
    composite = EpsilonGammaBox(low=torch.full_like(ctx.inputs, lo), high=torch.full_like(ctx.inputs, hi),
                                epsilon=float(epsilon), gamma=float(gamma))
    return _attribute(ctx, composite, relevance_init)


@register("lrp_epsilon_alpha2_beta1", **_LRP)
def lrp_epsilon_alpha2_beta1(ctx, epsilon=1e-6, relevance_init="logit"):
    """zennit EpsilonAlpha2Beta1: alpha=2, beta=1 for convolutions, epsilon for dense layers."""
    composite = _composite(1e-6, DirectAlphaBeta(2.0, 1.0, 1e-6), DirectEpsilon(float(epsilon)))
    return _attribute(ctx, composite, relevance_init)


@register("lrp_epsilon_alpha2_beta1_flat", **_LRP)
def lrp_epsilon_alpha2_beta1_flat(ctx, epsilon=1e-6, relevance_init="logit"):
    """zennit EpsilonAlpha2Beta1Flat: flat first layer, alpha2-beta1 convolutions, epsilon dense layers."""
    composite = _composite(1e-6, DirectAlphaBeta(2.0, 1.0, 1e-6), DirectEpsilon(float(epsilon)),
                           first=DirectFlat(1e-6))
    return _attribute(ctx, composite, relevance_init)


@register("excitation_backprop", **{**_LRP, "signed": False})
def excitation_backprop(ctx, relevance_init="logit"):
    """Excitation backprop: z+ on every linear layer, sums and pools normalized (Zhang et al. 2016).

    zennit's ``ExcitationBackprop`` layer map (activations keep their gradient) with the z+ and sum rules computed
    directly (:mod:`.direct_rules`): the same map without zennit's re-run forward per layer."""
    composite = LayerMapComposite([(Sum, DirectSumNorm(1e-6)), (AvgPool, Norm(stabilizer=1e-6)),
                                   (Linear, DirectZPlus(1e-6))])
    return _attribute(ctx, composite, relevance_init)
