"""Sampling methods with per-image random streams: GradientSHAP, Expected Gradients, their layer version, RISE.

Hand-written because captum's ``GradientShap``/``LayerGradientShap`` draw baselines and path positions from
numpy's global RNG (``np.random.choice``/``np.random.uniform``), so a map depended on the batch it was in and
on whatever ran before; captum has no RISE. Every draw here comes from the image's own generator
(``ctx.generator(stream)``, the CRC-32 of its id), in a fixed order, so a map does not depend on batching, on
the memory budget or on the global RNGs. The formulas are the papers'; tests compare them with captum where
the draws do not matter (linear models) and with direct implementations of the formulas.
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F
from captum.attr import Saliency

from ..errors import ExplanationError
from .cam import _capture
from .params import checked, int_between, non_negative, one_of
from .registry import register

__all__ = ["shap_draws", "rise_masks"]

_SAMPLES = int_between(1, 100_000, " (sampling error falls as 1/sqrt(n); 20-200 are usual)")
_MASKS = int_between(1, 100_000, " (RISE uses 1000-8000 masks on natural images)")


def shap_draws(generator: torch.Generator, n_samples: int, n_refs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference index and path position (alpha ~ U(0, 1)) of each of ``n_samples`` GradientSHAP samples.

    Drawn in this order from the image's generator, before the per-sample input noise (drawn sample by sample).
    """
    idx = torch.randint(n_refs, (n_samples,), generator=generator, device=generator.device)
    alpha = torch.rand(n_samples, generator=generator, device=generator.device, dtype=torch.float64)
    return idx, alpha


def _expand_target(ctx, m: int):
    """captum's ``target=`` for ``m`` stacked copies of the chunk (sample-major)."""
    return None if ctx.target is None else ctx.target.repeat(m)


def _path_points(ctx, refs: torch.Tensor, n_samples: int, stdevs: float) -> Iterator[tuple]:
    """Chunks ``(m, noisy inputs, references, points)`` of GradientSHAP samples, ``m x n`` rows each (sample-major).

    ``refs`` is ``n x R x C x ...``: the reference set of each image. A sample of image ``i`` takes reference
    ``refs[i, idx]``, the input plus Gaussian noise of sd ``stdevs`` and the point ``ref + alpha (noisy - ref)``.
    """
    x, n = ctx.inputs, len(ctx.inputs)
    gens = [ctx.generator(int(i)) for i in ctx.index]
    draws = [shap_draws(g, int(n_samples), refs.shape[1]) for g in gens]
    per = ctx.memory.copies(n)
    shape = (-1, *([1] * (x.ndim - 1)))
    for start in range(0, int(n_samples), per):
        m = min(per, int(n_samples) - start)
        ks = range(start, start + m)
        noise = torch.stack([torch.stack([torch.randn(x.shape[1:], generator=g, device=x.device, dtype=x.dtype)
                                          for g in gens]) for _ in ks])
        noisy = (x[None] + float(stdevs) * noise).reshape(m * n, *x.shape[1:])
        base = torch.stack([torch.stack([refs[i, draws[i][0][k]] for i in range(n)]) for k in ks]).reshape_as(noisy)
        alpha = torch.stack([torch.stack([draws[i][1][k] for i in range(n)]) for k in ks]).reshape(shape).to(x)
        yield m, noisy, base, base + alpha * (noisy - base)


def _input_shap(ctx, refs: torch.Tensor, n_samples: int, stdevs: float) -> torch.Tensor:
    """``mean_k (x + eps_k - b_k) * grad f(b_k + alpha_k (x + eps_k - b_k))`` per image."""
    saliency, total = Saliency(ctx.head), torch.zeros_like(ctx.inputs)
    for m, noisy, base, points in _path_points(ctx, refs, n_samples, stdevs):
        grads = saliency.attribute(points, target=_expand_target(ctx, m), abs=False)
        total += ((noisy - base) * grads).reshape(m, *ctx.inputs.shape).sum(0)
    return total / int(n_samples)


def _shared_refs(ctx) -> torch.Tensor:
    """GradientSHAP's two references, the same for every image: black (zeros) and seeded unit Gaussian noise."""
    x = ctx.inputs
    noise = torch.randn((1, *x.shape[1:]), generator=ctx.generator(-1), device=x.device, dtype=x.dtype)
    return torch.cat([torch.zeros_like(noise), noise])[None].expand(len(x), -1, *x.shape[1:])


@register("gradient_shap", family="sampling", library="xaikit", cost=lambda p: p["n_samples"], supports_3d=True)
@checked(n_samples=_SAMPLES, stdevs=non_negative)
def gradient_shap(ctx, n_samples=20, stdevs=0.0):
    """GradientSHAP (Lundberg & Lee 2017) over references {zeros, seeded noise}, per-image random streams.

    captum's formula (``GradientShap``) with draws from each image's generator instead of numpy's global RNG.
    """
    ctx.record["baselines"] = "zeros + seeded unit Gaussian noise"
    return _input_shap(ctx, _shared_refs(ctx), n_samples, stdevs)


def _references(ctx, references, n_references: int) -> torch.Tensor:
    """``n x R x C x ...``: the given reference images for every image, or per-image seeded uniform noise."""
    x = ctx.inputs
    if references is not None:
        refs = torch.as_tensor(references).to(x)
        if refs.ndim == x.ndim - 1:
            refs = refs[None]
        if refs.shape[1:] != x.shape[1:] or not len(refs):
            raise ExplanationError(f"expected_gradients: references must be reference images R x "
                                   f"{' x '.join(map(str, x.shape[1:]))} (e.g. training images); got shape "
                                   f"{tuple(refs.shape)}.")
        ctx.record["baselines"] = f"{len(refs)} given reference images"
        return refs[None].expand(len(x), *refs.shape)
    ctx.record["baselines"] = f"{n_references} seeded uniform-noise images in each image's intensity range"
    out = []
    for img, stream in zip(x, ctx.index):
        g = ctx.generator(int(stream) + 1)  # its own stream: the sample draws of shap_draws stay as they are
        u = torch.rand((int(n_references), *x.shape[1:]), generator=g, device=x.device, dtype=x.dtype)
        out.append(img.min() + u * (img.max() - img.min()))
    return torch.stack(out)


@register("expected_gradients", family="sampling", library="xaikit", cost=lambda p: p["n_samples"],
          supports_3d=True)
@checked(n_samples=_SAMPLES, n_references=int_between(1, 10_000))
def expected_gradients(ctx, n_samples=32, references=None, n_references=8):
    """Expected Gradients (Erion et al. 2021): integrated gradients averaged over references drawn at random.

    ``E_{b ~ references, alpha ~ U(0,1)} (x - b) * grad f(b + alpha (x - b))``, one reference and one alpha per
    sample. ``references`` (``R x C x ...``) should be training images; without them each image gets
    ``n_references`` seeded uniform-noise images spanning its intensity range.
    """
    return _input_shap(ctx, _references(ctx, references, n_references), n_samples, 0.0)


def _layer_acts(ctx, x: torch.Tensor) -> torch.Tensor:
    store: dict = {}
    with _capture(ctx.layer, store, with_grad=False), torch.no_grad():
        ctx.model(x)
    return store["act"]


@register("layer_gradient_shap", family="cam", library="xaikit", cost=lambda p: 2 * p["n_samples"],
          needs_layer=True, supports_3d=True)
@checked(n_samples=_SAMPLES, stdevs=non_negative)
def layer_gradient_shap(ctx, n_samples=20, stdevs=0.0):
    """Layer GradientSHAP (captum's ``LayerGradientShap``): ``(A(x + eps) - A(b)) x dF/dA`` at the path point,
    averaged over samples and summed over channels; references {zeros, seeded noise}, per-image streams."""
    total = None
    for m, noisy, base, points in _path_points(ctx, _shared_refs(ctx), n_samples, stdevs):
        store: dict = {}
        with _capture(ctx.layer, store, with_grad=True), torch.enable_grad():
            out = ctx.model(points)
            score = ctx.spec.score(out) if ctx.spec.fn is not None else \
                out.gather(1, ctx.spec.indices.repeat(m).view(-1, 1).to(out.device))
            (grad,) = torch.autograd.grad(score.sum(), store["act"])
        part = ((_layer_acts(ctx, noisy) - _layer_acts(ctx, base)) * grad).reshape(m, len(ctx.inputs), *grad.shape[1:])
        total = part.sum(0) if total is None else total + part.sum(0)
    ctx.record["baselines"] = "zeros + seeded unit Gaussian noise"
    return (total / int(n_samples)).sum(1, keepdim=True)


# --- RISE --------------------------------------------------------------------------------------------
def rise_masks(generator: torch.Generator, n_masks: int, size: tuple[int, ...], grid: int, p: float,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """RISE masks (Petsiuk et al. 2018): ``n_masks x 1 x *size`` soft masks in [0, 1].

    A ``grid^d`` binary grid (each cell 1 with probability ``p``) is upsampled (bi/trilinear) to
    ``(grid + 1) x cell`` and cropped at a random shift below one cell, as in the authors' code.
    """
    dims = len(size)
    cell = [-(-s // grid) for s in size]  # ceil(s / grid)
    device = generator.device
    cells = (torch.rand((n_masks, 1, *[grid] * dims), generator=generator, device=device) < p).to(dtype)
    up = F.interpolate(cells, size=tuple((grid + 1) * c for c in cell), mode="bilinear" if dims == 2 else "trilinear",
                       align_corners=False)
    shifts = torch.stack([torch.randint(c, (n_masks,), generator=generator, device=device) for c in cell], 1)
    return torch.stack([up[(k, slice(None), *[slice(int(o), int(o) + s) for o, s in zip(shifts[k], size)])]
                        for k in range(n_masks)])


def _rise_scores(ctx, i: int, masked: torch.Tensor, score: str) -> torch.Tensor:
    out = ctx.model(masked)
    if ctx.spec.indices is None and ctx.spec.fn is not None:  # mask, box or user-callable target: its own score
        return ctx.spec.score(out)
    idx = ctx.spec.indices[i] if ctx.spec.indices is not None else ctx.store["pred"][i]
    return (torch.softmax(out, 1) if score == "softmax" else out)[:, idx]


@register("rise", family="perturbation", library="xaikit", cost=lambda p: p["n_masks"] / 3, signed=True,
          supports_3d=True)
@checked(n_masks=_MASKS, grid=int_between(2, 64), p=non_negative, score=one_of("softmax", "logit"))
def rise(ctx, n_masks=500, grid=7, p=0.5, score="softmax"):
    """RISE (Petsiuk et al. 2018): ``S = sum_k f(x * M_k) M_k / (n_masks p)`` over seeded random masks.

    ``f`` is the target class's softmax probability (the paper's; ``score="logit"`` for the logit) or, for mask,
    box and callable targets, the target's own score. Masks come from each image's generator; masked copies
    run forward only, in memory-sized chunks. Not in captum or zennit.
    """
    if not 0 < p <= 1:
        raise ExplanationError(f"method 'rise': p={p!r} is not valid; p must be in (0, 1] (the probability that a "
                               "grid cell is kept; the paper uses 0.5).")
    x = ctx.inputs
    with torch.no_grad():
        if ctx.spec.indices is None and ctx.spec.fn is None:
            ctx.store["logits"] = ctx.model(x)
            ctx.store["pred"] = ctx.store["logits"].argmax(1)
        maps = []
        for i, stream in enumerate(ctx.index):
            masks = rise_masks(ctx.generator(int(stream)), int(n_masks), tuple(x.shape[2:]), int(grid), float(p),
                               x.dtype)
            total = torch.zeros_like(masks[0])
            for start in range(0, len(masks), 3 * ctx.memory.chunk):  # forward only: ~3x the samples fit
                chunk = masks[start : start + 3 * ctx.memory.chunk]
                s = _rise_scores(ctx, i, x[i : i + 1] * chunk, score)
                total += (s.view(-1, *([1] * (chunk.ndim - 1))) * chunk).sum(0)
            maps.append(total / (int(n_masks) * float(p)))
    return torch.stack(maps)
