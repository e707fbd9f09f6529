"""FullGrad (Srinivas & Fleuret 2019): input-gradient x input plus the bias-gradients of every layer.

Not in captum or zennit; pytorch-grad-cam's ``FullGrad`` is 2-D only (Conv2d/BatchNorm2d), so it is written
here for 2-D and 3-D on one forward and one backward, with pytorch-grad-cam's post-processing (the authors'):
each term is made non-negative (|.|), min-max scaled per image and channel, resized to the input, and summed.
For a ReLU network without normalization in train mode the raw terms are complete: ``f(x) = grad_x f . x +
sum_layers grad_b f . b`` (the paper's full-gradient decomposition; a test checks it).
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register

__all__ = ["bias_layers", "layer_bias"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORM = (nn.modules.batchnorm._BatchNorm,)


def bias_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Convolutions with a bias and BatchNorm layers (their implicit bias), in registration order."""
    frozen = _frozen_bn()
    return [(n, m) for n, m in model.named_modules()
            if (isinstance(m, _CONV) and m.bias is not None) or isinstance(m, _NORM + frozen)]


def _frozen_bn() -> tuple[type, ...]:
    from torchvision.ops.misc import FrozenBatchNorm2d  # detectors' backbones use it

    return (FrozenBatchNorm2d,)


def layer_bias(layer: nn.Module) -> torch.Tensor:
    """The bias a layer adds per channel; BatchNorm's is ``beta - mean gamma / sqrt(var + eps)``."""
    if isinstance(layer, _CONV):
        return layer.bias.detach()
    eps = getattr(layer, "eps", 1e-5)
    weight = layer.weight if layer.weight is not None else torch.ones_like(layer.running_var)
    bias = layer.bias if layer.bias is not None else torch.zeros_like(layer.running_var)
    return (bias - layer.running_mean * weight / torch.sqrt(layer.running_var + eps)).detach()


@contextlib.contextmanager
def _outputs(layers: list[nn.Module], store: list):
    """Keep every layer's output in the graph; later in-place ops act on a clone."""
    def hook(module, args, output):
        store.append((module, output))
        return output.clone()

    handles = [layer.register_forward_hook(hook) for layer in layers]
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


def full_gradients(ctx) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """(input gradient, [(layer output gradient, per-channel bias)]) of the target score, one backward."""
    layers = [m for _, m in bias_layers(ctx.model)]
    store: list = []
    x = ctx.inputs.detach().requires_grad_(True)
    with _outputs(layers, store), torch.enable_grad():
        logits = ctx.model(x)
        outs = [o for _, o in store]
        grads = torch.autograd.grad(ctx.spec.score(logits).sum(), [x, *outs], allow_unused=True)
    ctx.store["logits"] = logits.detach()
    pairs = [(g, layer_bias(m)) for (m, _), g in zip(store, grads[1:])
             if g is not None and g.ndim == x.ndim]  # spatial layers only (a BatchNorm1d head has no map)
    return grads[0], pairs


def _scaled(t: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """Min-max scale each image-channel map to [0, 1] (pytorch-grad-cam's ``scale_cam_image``), then resize."""
    flat = t.flatten(2)
    lo, hi = flat.amin(2, keepdim=True), flat.amax(2, keepdim=True)
    flat = (flat - lo) / (1e-7 + (hi - lo))
    t = flat.view_as(t)
    if t.shape[2:] == size:
        return t
    return F.interpolate(t, size=tuple(size), mode="bilinear" if len(size) == 2 else "trilinear",
                         align_corners=False)


@register("fullgrad", family="gradient", library="xaikit", cost=1, signed=False, clean_forward=True,
          supports_3d=True)
def fullgrad(ctx):
    """FullGrad (Srinivas & Fleuret 2019): |grad x input| plus |bias x bias-gradient| of every conv/BatchNorm
    layer, each scaled to [0, 1] per channel and resized, summed over channels and layers; not in captum."""
    grad, pairs = full_gradients(ctx)
    size = ctx.inputs.shape[2:]
    total = _scaled((grad * ctx.inputs).abs(), size).sum(1, keepdim=True)
    for g, bias in pairs:
        b = bias.to(g).view(1, -1, *([1] * (g.ndim - 2)))
        total = total + _scaled((b * g).abs(), size).sum(1, keepdim=True)
    return total
