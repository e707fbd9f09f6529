"""Layer attributions backed by captum: what a chosen layer holds and how much it contributes to the target.

Each returns the captum attribution of the layer's output summed over channels (``n x 1 x h x w``), which the
engine upsamples to the input like a CAM; ``layer=`` picks the layer (default: the last spatial one). These are
TorchEsegeta's layer methods (Layer Activation, Layer Conductance, Internal Influence, Layer Gradient x
Activation, Layer Integrated Gradients; Layer GradientSHAP lives in :mod:`.sampling` for its per-image draws).
"""
from __future__ import annotations

import torch
from captum.attr import (
    InternalInfluence,
    LayerActivation,
    LayerConductance,
    LayerGradientXActivation,
    LayerIntegratedGradients,
)

from .params import checked, int_between, one_of, real_number
from .registry import register

__all__: list[str] = []

_STEPS = int_between(1, 2000, " (Gauss-Legendre nodes need an n x n matrix; 20-100 steps are usual)")
_LAYER = {"family": "cam", "library": "captum", "needs_layer": True, "supports_3d": True}


def _channels(attr: torch.Tensor, reduce: str = "sum") -> torch.Tensor:
    return attr.sum(1, keepdim=True) if reduce == "sum" else attr.mean(1, keepdim=True)


@register("layer_activation", **_LAYER, cost=1 / 3)
@checked(reduce=one_of("mean", "sum"))
def layer_activation(ctx, reduce="mean"):
    """The layer's activations averaged over channels (captum ``LayerActivation``): what the layer holds, the
    same for every target (Erhan et al. 2009 view; the brain-tumour seed's "activations")."""
    with torch.no_grad():
        return _channels(LayerActivation(ctx.model, ctx.layer).attribute(ctx.inputs), reduce)


@register("layer_conductance", **_LAYER, cost=lambda p: p["n_steps"])
@checked(n_steps=_STEPS, baseline=real_number)
def layer_conductance(ctx, n_steps=32, baseline=0.0):
    """Layer conductance (Dhamdhere et al. 2018): integrated-gradient flow through each unit of the layer,
    summed over channels; the layer's conductances sum to f(x) - f(baseline)."""
    inputs = ctx.inputs.requires_grad_(True)  # captum's layer hooks need a graph from the input
    attr = LayerConductance(ctx.head, ctx.layer).attribute(
        inputs, baselines=float(baseline), target=ctx.target, n_steps=int(n_steps),
        internal_batch_size=max(ctx.memory.chunk, len(ctx.inputs)))
    return _channels(attr)


@register("internal_influence", **_LAYER, cost=lambda p: p["n_steps"])
@checked(n_steps=_STEPS, baseline=real_number)
def internal_influence(ctx, n_steps=32, baseline=0.0):
    """Internal influence (Leino et al. 2018): the layer gradient integrated along the input path from the
    baseline, summed over channels."""
    inputs = ctx.inputs.requires_grad_(True)
    attr = InternalInfluence(ctx.head, ctx.layer).attribute(
        inputs, baselines=float(baseline), target=ctx.target, n_steps=int(n_steps),
        internal_batch_size=max(ctx.memory.chunk, len(ctx.inputs)))
    return _channels(attr)


@register("layer_gradient_x_activation", **_LAYER, cost=0.5)
def layer_gradient_x_activation(ctx):
    """Layer gradient x activation (captum ``LayerGradientXActivation``), summed over channels.

    The same map as ``hirescam`` (Draelos & Carin 2020 named the channel sum HiResCAM); registered under
    captum's and TorchEsegeta's name so their users find it. A test checks the two agree.
    """
    attr = LayerGradientXActivation(ctx.head, ctx.layer).attribute(ctx.inputs, target=ctx.target)
    return _channels(attr)


@register("layer_integrated_gradients", **_LAYER, cost=lambda p: p["n_steps"])
@checked(n_steps=_STEPS, baseline=real_number)
def layer_integrated_gradients(ctx, n_steps=32, baseline=0.0):
    """Layer integrated gradients (captum ``LayerIntegratedGradients``): IG in the layer's activation space from
    the layer's value at the baseline input, summed over channels; sums to f(x) - f(baseline)."""
    attr = LayerIntegratedGradients(ctx.head, ctx.layer).attribute(
        ctx.inputs, baselines=float(baseline), target=ctx.target, n_steps=int(n_steps),
        internal_batch_size=max(ctx.memory.chunk, len(ctx.inputs)))
    return _channels(attr)
