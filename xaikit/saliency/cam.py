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
        for start in range(0, len(masks), ctx.memory.chunk * 3):  # forward only: ~3x the samples fit
            out = ctx.model(x * masks[start : start + ctx.memory.chunk * 3])
            scores.append(ctx.spec.fn(out) if idx is None else torch.softmax(out, 1)[:, idx])
    return torch.cat(scores)


# --- the pytorch-grad-cam 1.5 family (jacobgil/pytorch-grad-cam), checked against the grad-cam package ---------
def _weighted(weights: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """Signed channel sum ``sum_c w_c A_c`` for weights ``n x C``."""
    return (weights.view(*weights.shape, *([1] * (act.ndim - 2))) * act).sum(1, keepdim=True)


@register("xgradcam", family="cam", library="xaikit", cost=0.5, needs_layer=True, signed=False, clean_forward=True,
          supports_3d=True)
def xgradcam(ctx):
    """XGrad-CAM: channel weights sum(grad x A) / (sum(A) + 1e-7) (Fu et al. 2020); ReLU; not in captum."""
    act, grad, _ = layer_pass(ctx)
    sp = _spatial(act)
    weights = (grad * act).sum(sp) / (act.sum(sp) + 1e-7)
    signed = _weighted(weights, act)
    return signed.clamp_min(0), signed


@register("gradcam_elementwise", family="cam", library="xaikit", cost=0.5, needs_layer=True, signed=False,
          clean_forward=True, supports_3d=True)
def gradcam_elementwise(ctx):
    """Grad-CAM element-wise (pytorch-grad-cam's GradCAMElementWise): channel sum of ReLU(grad x A), then ReLU."""
    act, grad, _ = layer_pass(ctx)
    return (grad * act).clamp_min(0).sum(1, keepdim=True)


def first_component(t: torch.Tensor) -> torch.Tensor:
    """Projection of each position's channel vector on the first principal component (``n x 1 x h x w``).

    pytorch-grad-cam's ``get_2d_projection``: channels centred over positions, SVD, projection on the first right
    singular vector. SVD leaves the sign free; it is fixed so that the larger magnitude is positive (the sign
    correction of Chung & Ying 2025, pytorch-grad-cam's ``get_2d_projection_with_sign_correction``).
    """
    out = []
    for a in t.double():
        flat = a.reshape(a.shape[0], -1).T
        flat = flat - flat.mean(0)
        _, _, vh = torch.linalg.svd(flat, full_matrices=False)
        proj = flat @ vh[0]
        out.append(-proj if proj.min().abs() > proj.max().abs() else proj)
    return torch.stack(out).reshape(len(t), 1, *t.shape[2:]).to(t.dtype)


@register("eigencam", family="cam", library="xaikit", cost=1 / 3, needs_layer=True, signed=False, clean_forward=True,
          supports_3d=True)
def eigencam(ctx):
    """Eigen-CAM: first principal component of the layer's activations (Muhammad & Yeasin 2020), ReLU.

    Class-agnostic (the target does not enter); sign fixed as in :func:`first_component`. Not in captum.
    """
    store: dict = {}
    with _capture(ctx.layer, store, with_grad=False), torch.no_grad():
        ctx.store["logits"] = ctx.model(ctx.inputs)
    signed = first_component(store["act"])
    return signed.clamp_min(0), signed


@register("eigengradcam", family="cam", library="xaikit", cost=0.5, needs_layer=True, signed=False,
          clean_forward=True, supports_3d=True)
def eigengradcam(ctx):
    """Eigen-Grad-CAM: first principal component of gradient x activation (pytorch-grad-cam), ReLU."""
    act, grad, _ = layer_pass(ctx)
    signed = first_component(grad * act)
    return signed.clamp_min(0), signed


@register("ablationcam", family="cam", library="xaikit", cost=lambda p: 1 + p.get("n_channels", 512) / 3,
          needs_layer=True, signed=False, clean_forward=True, supports_3d=True)
def ablationcam(ctx):
    """Ablation-CAM (Desai & Ramaswamy 2020): channel weight = relative drop of the target score when the
    channel is set to zero, ``(y - y_k) / y``; ReLU of the weighted sum. Ablated copies run forward only, in
    memory-sized chunks; the layer's output is computed once per image. Not in captum."""
    store: dict = {}
    with _capture(ctx.layer, store, with_grad=False), torch.no_grad():
        logits = ctx.model(ctx.inputs)
    ctx.store["logits"] = logits
    act = store["act"]
    scores = _target_scores(ctx, logits, slice(None))
    weights = torch.stack([_ablation_drops(ctx, i, act[i], scores[i]) for i in range(len(act))])
    signed = _weighted(weights, act)
    return signed.clamp_min(0), signed


def _target_scores(ctx, out: torch.Tensor, rows) -> torch.Tensor:
    """The target score of outputs ``out`` (index targets: the logit, as pytorch-grad-cam's ClassifierOutputTarget)."""
    if ctx.spec.fn is not None:
        return ctx.spec.score(out)
    idx = ctx.spec.indices[rows] if ctx.spec.indices is not None else out.argmax(1)
    return out.gather(1, idx.to(out.device).view(-1, 1)).squeeze(1)


def _ablation_drops(ctx, i: int, act: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    chunk, drops = ctx.memory.chunk * 3, []
    x = ctx.inputs[i : i + 1]
    for start in range(0, len(act), chunk):
        channels = torch.arange(start, min(start + chunk, len(act)), device=act.device)
        ablated = act[None].repeat(len(channels), *([1] * act.ndim))
        ablated[torch.arange(len(channels)), channels] = 0
        handle = ctx.layer.register_forward_hook(lambda m, a, o, new=ablated: new)
        try:
            with torch.no_grad():
                out = ctx.model(x.expand(len(channels), *x.shape[1:]))
        finally:
            handle.remove()
        if ctx.spec.fn is not None:
            drops.append(ctx.spec.score(out))
        else:
            idx = ctx.spec.indices[i] if ctx.spec.indices is not None else ctx.store["logits"][i].argmax()
            drops.append(out[:, int(idx)])
    ablated_scores = torch.cat(drops)
    safe = torch.where(score != 0, score, torch.ones_like(score))
    return (score - ablated_scores) / safe
