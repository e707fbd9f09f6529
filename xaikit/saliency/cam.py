"""Class activation maps: Grad-CAM and relatives, on an inner layer, upsampled by the engine.

Grad-CAM and HiResCAM use captum (``LayerGradCam``, ``LayerGradientXActivation``). Grad-CAM++, LayerCAM and
Score-CAM are not in captum; they are written here on one shared forward/backward (:func:`layer_pass`).
Formulas follow the papers and jacobgil/pytorch-grad-cam. All work for 2D and 3D layers.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam, LayerGradientXActivation

from .params import checked, one_of
from .registry import register

__all__ = ["layer_pass"]


@contextlib.contextmanager
def _capture(layer: torch.nn.Module, store: dict, with_grad: bool):
    """Forward hook: keep the layer output; with ``with_grad`` cut the graph there so backward stops early."""

    def hook(module, args, output):
        if not with_grad:
            store["act"] = output.detach()
            return None
        leaf = output.detach().requires_grad_(True)
        store["act"] = leaf
        return leaf.clone()  # a clone, so in-place ops after the layer (DenseNet's F.relu_) leave the leaf alone

    handle = layer.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


def layer_pass(ctx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(activations, gradients of the target score w.r.t. them, logits) from one forward and one backward.

    Hand-written because captum exposes layer activations and layer gradients only through separate
    attribution calls (two forwards). Backward stops at the layer: weights are frozen and the input needs
    no gradient.
    """
    store: dict = {}
    with _capture(ctx.layer, store, with_grad=True), torch.enable_grad():
        logits = ctx.model(ctx.inputs)
        (grads,) = torch.autograd.grad(ctx.spec.score(logits).sum(), store["act"])
    ctx.store["logits"] = logits.detach()
    return store["act"].detach(), grads, logits.detach()


def _spatial(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(2, t.ndim))


@register("gradcam", family="cam", library="captum", cost=0.5, needs_layer=True, signed=False, clean_forward=True,
          supports_3d=True)
@checked(rectify=one_of("relu", "abs"), normalize=one_of("none", "sum"))
def gradcam(ctx, rectify="relu", normalize="none"):
    """Grad-CAM: ReLU of the gradient-weighted channel sum (Selvaraju et al. 2017); signed map kept in raw.

    ``rectify="abs"`` keeps the magnitude of negative evidence (|CAM|) instead of cutting it, and
    ``normalize="sum"`` divides each map, upsampled to the input, by its total absolute mass (the sum of
    |A_c| over pixels is 1): Sümer et al. (2023)'s definition, used by the ``sumer2023`` preset. An all-zero
    map stays zero.
    """
    signed = LayerGradCam(ctx.head, ctx.layer).attribute(ctx.inputs, target=ctx.target, relu_attributions=False)
    cam = signed.clamp_min(0) if rectify == "relu" else signed.abs()
    return (_unit_mass(_upsample(cam, ctx.inputs.shape[2:])) if normalize == "sum" else cam), signed


def _upsample(cam: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """To input resolution as the engine does (bilinear / trilinear, corners not aligned)."""
    mode = "bilinear" if len(size) == 2 else "trilinear"
    return F.interpolate(cam, size=tuple(size), mode=mode, align_corners=False)


def _unit_mass(cam: torch.Tensor) -> torch.Tensor:
    mass = cam.abs().sum(tuple(range(1, cam.ndim)), keepdim=True)
    return cam / torch.where(mass > 0, mass, torch.ones_like(mass))


@register("hirescam", family="cam", library="captum", cost=0.5, needs_layer=True, clean_forward=True,
          supports_3d=True)
def hirescam(ctx):
    """HiResCAM: channel sum of gradient x activation, signed, no spatial averaging (Draelos & Carin 2020)."""
    attr = LayerGradientXActivation(ctx.head, ctx.layer).attribute(ctx.inputs, target=ctx.target)
    return attr.sum(1, keepdim=True)


@register("gradcam_pp", family="cam", library="xaikit", cost=0.5, needs_layer=True, signed=False,
          clean_forward=True, supports_3d=True)
def gradcam_pp(ctx):
    """Grad-CAM++: pixel-weighted positive gradients (Chattopadhay et al. 2018); not in captum."""
    act, grad, _ = layer_pass(ctx)
    g2, g3 = grad.pow(2), grad.pow(3)
    denom = 2 * g2 + act.sum(_spatial(act), keepdim=True) * g3
    alpha = g2 / torch.where(denom != 0, denom, torch.ones_like(denom))
    weights = (alpha * grad.clamp_min(0)).sum(_spatial(act), keepdim=True)
    return (weights * act).sum(1, keepdim=True).clamp_min(0)


@register("layercam", family="cam", library="xaikit", cost=0.5, needs_layer=True, signed=False, clean_forward=True,
          supports_3d=True)
def layercam(ctx):
    """LayerCAM: ReLU of the channel sum of positive gradient x activation (Jiang et al. 2021); not in captum."""
    act, grad, _ = layer_pass(ctx)
    return (grad.clamp_min(0) * act).sum(1, keepdim=True).clamp_min(0)


@register("scorecam", family="cam", library="xaikit", cost=lambda p: 1 + p.get("n_channels", 512) / 3,
          needs_layer=True, signed=False, clean_forward=True, supports_3d=True)
def scorecam(ctx):
    """Score-CAM: channels weighted by the softmax score of the input masked by each upsampled channel
    (Wang et al. 2020); not in captum. Masked inputs run in memory-sized chunks."""
    store: dict = {}
    with _capture(ctx.layer, store, with_grad=False), torch.no_grad():
        logits = ctx.model(ctx.inputs)
    ctx.store["logits"] = logits
    act = store["act"]
    weights = torch.stack([_channel_scores(ctx, i, act[i], logits) for i in range(len(act))])
    return (weights.view(*weights.shape, *([1] * (act.ndim - 2))) * act).sum(1, keepdim=True).clamp_min(0)


def _channel_scores(ctx, i: int, act: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    x = ctx.inputs[i : i + 1]
    mode = "bilinear" if act.ndim == 3 else "trilinear"
    up = F.interpolate(act[:, None], size=x.shape[2:], mode=mode, align_corners=False)  # K x 1 x H x W
    flat = up.reshape(len(up), -1)
    lo, hi = flat.amin(1), flat.amax(1)
    scale = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    masks = ((flat - lo[:, None]) / scale[:, None]).view_as(up)
    idx = None if ctx.spec.fn is not None else (
        ctx.spec.indices[i] if ctx.spec.indices is not None else logits[i].argmax())
    scores = []
    with torch.no_grad():
        for start in range(0, len(masks), ctx.memory.max_batch * 3):  # forward only: ~3x the samples fit
            out = ctx.model(x * masks[start : start + ctx.memory.max_batch * 3])
            scores.append(ctx.spec.fn(out) if idx is None else torch.softmax(out, 1)[:, idx])
    return torch.cat(scores)
