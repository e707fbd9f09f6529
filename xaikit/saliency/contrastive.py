"""Contrastive excitation backprop (Zhang et al. 2016, "Top-down neural attention by excitation backprop").

The contrastive marginal winning probability (c-MWP) of a target is its excitation-backprop map minus the map of
its *dual*: the same output unit with the weights of the top layer negated. Excitation backprop (z+ on every
linear layer, sums and pools normalized) is zennit's ``ExcitationBackprop`` composite; the dual is the same
composite with the top layer's rule on the negated weights (:class:`DualZPlus`). Both start from the same
one-hot signal, so c-MWP sums to 0 over the input where every layer conserves the signal. Not in captum or
zennit as a method; TorchRay has it (not installable here), so tests compare it with a direct implementation
of the paper's formula (MWP layer by layer on explicit matrices).
"""
from __future__ import annotations

import torch
from torch import nn
from zennit.composites import ExcitationBackprop, MixedComposite, NameMapComposite
from zennit.core import BasicHook, Stabilizer

from ..errors import ExplanationError
from .lrp import _attribute
from .registry import register

__all__ = ["DualZPlus", "top_layer"]


class DualZPlus(BasicHook):
    """zennit's ``ZPlus`` rule applied to the layer with its weights and bias negated (the dual unit)."""

    def __init__(self, stabilizer: float = 1e-6):
        stab = Stabilizer.ensure(stabilizer)
        super().__init__(
            input_modifiers=[lambda x: x.clamp(min=0), lambda x: x.clamp(max=0)],
            param_modifiers=[lambda p, name: (-p).clamp(min=0),
                             lambda p, name: torch.zeros_like(p) if name == "bias" else (-p).clamp(max=0)],
            output_modifiers=[lambda out: out] * 2,
            gradient_mapper=(lambda out_grad, outputs: [out_grad / stab(sum(outputs))] * 2),
            reducer=(lambda inputs, gradients: inputs[0] * gradients[0] + inputs[1] * gradients[1]),
        )


def top_layer(model: nn.Module) -> str:
    """Name of the model's top linear layer: the last ``Linear``/convolution registered (the classifier)."""
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))]
    if not names:
        raise ExplanationError(f"contrastive_excitation_backprop: {type(model).__name__} has no Linear or "
                               "convolution layer whose weights define the dual unit.")
    return names[-1]


@register("contrastive_excitation_backprop", family="lrp", library="zennit", cost=4, supports_3d=True,
          refuses={"detection": "the dual unit negates the weights of one top linear unit; a detector's box score "
                                "comes out of its post-processing (top-k, NMS, box decoding), not from one unit"})
def contrastive_excitation_backprop(ctx, relevance_init="one_hot"):
    """Contrastive excitation backprop: MWP of the target minus MWP of its dual unit (top-layer weights
    negated), signed (Zhang et al. 2016). ``relevance_init="one_hot"`` is the paper's top-down signal."""
    name = top_layer(ctx.model)
    target = _attribute(ctx, ExcitationBackprop(), relevance_init)
    dual = MixedComposite([NameMapComposite([([name], DualZPlus())]), ExcitationBackprop()])
    ctx.record["dual_layer"] = name
    return target - _attribute(ctx, dual, relevance_init)
