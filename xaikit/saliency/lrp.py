"""Layer-wise relevance propagation and relatives, backed by zennit composites and our canonizers.

The relevance put on the output is the target score itself (one-hot x logit; zennit's own examples use the
bare one-hot, whose relevance sums to 1). So relevance sums to the explained logit as integrated gradients
does, and for LRP-0 on a bias-free ReLU network the input relevance equals input x gradient.
Montavon et al. 2019, "Layer-wise relevance propagation: an overview"; Kohlbrenner et al. 2020 (flat/plus
composites); Zhang et al. 2016 (excitation backprop).
"""
from __future__ import annotations

import torch
from zennit.attribution import Gradient
from zennit.composites import (
    EpsilonAlpha2Beta1, EpsilonAlpha2Beta1Flat, EpsilonGammaBox, EpsilonPlus, EpsilonPlusFlat, ExcitationBackprop,
    LayerMapComposite, layer_map_base,
)
from zennit.rules import Epsilon, ZPlus
from zennit.types import Linear

from .canonizers import canonized
from .registry import register

__all__: list[str] = []


def _attribute(ctx, composite) -> torch.Tensor:
    """Run zennit's Gradient attributor with ``composite`` on the canonized model; one forward+modified backward."""
    with canonized(ctx.model, ctx.inputs) as report:
        with Gradient(ctx.model, composite) as attributor:
            logits, relevance = attributor(ctx.inputs, attr_output=ctx.spec.relevance)
    ctx.store["logits"] = logits.detach()
    ctx.record["canonization"] = report
    return relevance


_LRP = {"family": "lrp", "library": "zennit", "cost": 2, "clean_forward": True, "supports_3d": True}


@register("lrp_epsilon", **_LRP, defaults={"epsilon": 1e-6})
def lrp_epsilon(ctx, epsilon=1e-6):
    """LRP-epsilon on every linear/conv layer (LRP-0 as epsilon -> 0)."""
    composite = LayerMapComposite(layer_map_base(float(epsilon)) + [(Linear, Epsilon(epsilon=float(epsilon)))])
    return _attribute(ctx, composite)


@register("lrp_zplus", **_LRP, signed=False, defaults={"stabilizer": 1e-6})
def lrp_zplus(ctx, stabilizer=1e-6):
    """LRP-z+ on every linear/conv layer (only positive contributions)."""
    composite = LayerMapComposite(layer_map_base(stabilizer) + [(Linear, ZPlus(stabilizer=float(stabilizer)))])
    return _attribute(ctx, composite)


@register("lrp_epsilon_plus", **_LRP, defaults={"epsilon": 1e-6})
def lrp_epsilon_plus(ctx, epsilon=1e-6):
    """zennit EpsilonPlus: z+ for convolutions, epsilon for dense layers."""
    return _attribute(ctx, EpsilonPlus(epsilon=float(epsilon)))


@register("lrp_epsilon_plus_flat", **_LRP, defaults={"epsilon": 1e-6})
def lrp_epsilon_plus_flat(ctx, epsilon=1e-6):
    """zennit EpsilonPlusFlat: flat rule on the first layer, z+ for convolutions, epsilon for dense layers."""
    return _attribute(ctx, EpsilonPlusFlat(epsilon=float(epsilon)))


@register("lrp_epsilon_gamma_box", **_LRP, defaults={"epsilon": 1e-6, "gamma": 0.25, "low": None, "high": None})
def lrp_epsilon_gamma_box(ctx, epsilon=1e-6, gamma=0.25, low=None, high=None):
    """zennit EpsilonGammaBox: z-box first layer within [low, high] (default: the inputs' range), gamma, epsilon."""
    lo = float(ctx.inputs.min()) if low is None else float(low)
    hi = float(ctx.inputs.max()) if high is None else float(high)
    ctx.record.update(box_low=lo, box_high=hi)
    composite = EpsilonGammaBox(low=torch.full_like(ctx.inputs, lo), high=torch.full_like(ctx.inputs, hi),
                                epsilon=float(epsilon), gamma=float(gamma))
    return _attribute(ctx, composite)


@register("lrp_epsilon_alpha2_beta1", **_LRP, defaults={"epsilon": 1e-6})
def lrp_epsilon_alpha2_beta1(ctx, epsilon=1e-6):
    """zennit EpsilonAlpha2Beta1: alpha=2, beta=1 for convolutions, epsilon for dense layers."""
    return _attribute(ctx, EpsilonAlpha2Beta1(epsilon=float(epsilon)))


@register("lrp_epsilon_alpha2_beta1_flat", **_LRP, defaults={"epsilon": 1e-6})
def lrp_epsilon_alpha2_beta1_flat(ctx, epsilon=1e-6):
    """zennit EpsilonAlpha2Beta1Flat: flat first layer, alpha2-beta1 convolutions, epsilon dense layers."""
    return _attribute(ctx, EpsilonAlpha2Beta1Flat(epsilon=float(epsilon)))


@register("excitation_backprop", **{**_LRP, "signed": False})
def excitation_backprop(ctx):
    """Excitation backprop: z+ on every linear layer, sums and pools normalised (Zhang et al. 2016)."""
    return _attribute(ctx, ExcitationBackprop())
