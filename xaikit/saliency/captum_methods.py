"""Gradient, path, sampling and perturbation methods backed by captum.

Every function receives a :class:`~xaikit.saliency.engine.MethodContext` and returns an ``n x C x H x W``
attribution (or a layer map). ``ctx.head`` is the forward captum sees (model + folded target),
``ctx.target`` captum's ``target=``, ``ctx.memory.chunk`` the samples one pass takes (chosen for speed, within
the memory bound ``ctx.memory.max_batch``: :mod:`xaikit.saliency.memory`).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from captum.attr import (
    Deconvolution,
    DeepLift,
    DeepLiftShap,
    FeatureAblation,
    GuidedBackprop,
    GuidedGradCam,
    InputXGradient,
    IntegratedGradients,
    KernelShap,
    LayerDeepLift,
    Lime,
    Occlusion,
    Saliency,
    ShapleyValueSampling,
)

from .params import (
    boolean,
    checked,
    int_between,
    non_negative,
    one_of,
    positive,
    positive_int,
    real_number,
    stride_within_window,
    window_size,
)
from .registry import register
from .targets import check_relevance_init

# Upper bounds that stop a typo (n_steps=10**12) from allocating or running for ever: Gauss-Legendre nodes come
# from an n x n eigenproblem (numpy's leggauss), and sample counts beyond these give no visible change.
_STEPS = int_between(1, 2000, " (Gauss-Legendre nodes need an n x n matrix; 50-300 steps are usual)")
_SAMPLES = int_between(1, 100_000, " (sampling error falls as 1/sqrt(n); 20-200 are usual)")

__all__: list[str] = []  # methods are reached through METHODS


def _per_eval(ctx) -> int:
    """Perturbed (or noisy) copies of the chunk one pass takes."""
    return ctx.memory.copies(len(ctx.inputs))


def _internal_batch(ctx) -> int:
    """captum's ``internal_batch_size``: the speed chunk, but never below the inputs (captum would warn and use
    them; they fit: the engine's chunks of inputs are at most the memory bound)."""
    return max(ctx.memory.chunk, len(ctx.inputs))


def _windows(p: dict) -> float:
    size, dims = p.get("input_size", 224), p.get("spatial_dims", 2)
    return ((size - p["window"]) // p["stride"] + 1) ** dims / 3 + 1  # forward-only passes count ~1/3


# --- gradients ---------------------------------------------------------------------------------------
@register("gradient", family="gradient", library="captum", cost=1, clean_forward=True, supports_3d=True)
def gradient(ctx):
    """Signed gradient of the target score w.r.t. the input (Simonyan et al. 2014)."""
    return Saliency(ctx.head).attribute(ctx.inputs, target=ctx.target, abs=False)


@register("input_x_gradient", family="gradient", library="captum", cost=1, clean_forward=True, supports_3d=True)
def input_x_gradient(ctx):
    """Input times gradient (Shrikumar et al. 2016)."""
    return InputXGradient(ctx.head).attribute(ctx.inputs, target=ctx.target)


@register("integrated_gradients", family="path", library="captum", cost=lambda p: p["n_steps"], supports_3d=True)
@checked(n_steps=_STEPS, baseline=real_number,
         integration=one_of("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"))
def integrated_gradients(ctx, n_steps=50, integration="gausslegendre", baseline=0.0):
    """Integrated gradients from a constant baseline (Sundararajan et al. 2017); chunked by internal_batch_size.

    ``integration`` is captum's quadrature: ``"gausslegendre"`` (default) or a Riemann sum;
    ``"riemann_right"`` (alphas 1/n, 2/n, ..., 1) is zennit's ``IntegratedGradients``, used by Sümer et al.
    (2023) and the ``sumer2023`` preset.
    """
    ig = IntegratedGradients(ctx.head)
    return ig.attribute(ctx.inputs, baselines=float(baseline), target=ctx.target, n_steps=int(n_steps),
                        method=integration, internal_batch_size=_internal_batch(ctx))


# --- SmoothGrad family ----------------------------------------------------------------------------
def _noise_moments(ctx, n_samples: int, noise_level: float, clean_sample: bool = False):
    """Mean and mean square of gradients over ``n_samples`` noisy copies, in memory-sized chunks.

    Written here because captum's NoiseTunnel expands all noise samples in one batch (no internal batch
    size), which runs out of memory for large inputs. Noise of sample ``i`` comes from its own generator
    (seeded by seed and global index), so the result does not depend on the memory budget. With
    ``clean_sample`` the last sample is the input itself (zennit's SmoothGrad), after the same noise draws.
    """
    x = ctx.inputs
    n = len(x)
    flat = x.reshape(n, -1)
    sigma = (noise_level * (flat.amax(1) - flat.amin(1))).view(n, *([1] * (x.ndim - 1)))
    gens = [ctx.generator(int(i)) for i in ctx.index]
    per = _per_eval(ctx)
    mean, mean_sq = torch.zeros_like(x), torch.zeros_like(x)
    saliency = Saliency(ctx.head)
    n_noisy = int(n_samples) - int(bool(clean_sample))
    for start in range(0, n_noisy, per):
        m = min(per, n_noisy - start)
        noise = torch.stack([torch.stack([torch.randn(x.shape[1:], generator=g, device=x.device, dtype=x.dtype)
                                          for g in gens]) for _ in range(m)])
        noisy = (x[None] + noise * sigma[None]).reshape(m * n, *x.shape[1:])
        target = None if ctx.target is None else ctx.target.repeat(m)
        grads = saliency.attribute(noisy, target=target, abs=False).reshape(m, *x.shape)
        mean += grads.sum(0)
        mean_sq += grads.pow(2).sum(0)
    if clean_sample:
        grads = saliency.attribute(x, target=ctx.target, abs=False)
        mean, mean_sq = mean + grads, mean_sq + grads.pow(2)
    return mean / n_samples, mean_sq / n_samples


_SG_RULES = {"n_samples": _SAMPLES, "noise_level": non_negative}


@register("smoothgrad", family="sampling", library="captum", cost=lambda p: p["n_samples"],
          supports_3d=True)
@checked(**_SG_RULES, clean_sample=boolean)
def smoothgrad(ctx, n_samples=20, noise_level=0.1, clean_sample=False):
    """Mean gradient over noisy copies, noise sd = noise_level x (max - min) of each input (Smilkov et al. 2017).

    ``clean_sample=True`` makes the last of the ``n_samples`` the noise-free input, as zennit's ``SmoothGrad``
    does (so one sample is the plain gradient); Sümer et al. (2023) and the ``sumer2023`` preset use it.
    """
    return _noise_moments(ctx, n_samples, noise_level, clean_sample)[0]


@register("smoothgrad_sq", family="sampling", library="captum", cost=lambda p: p["n_samples"],
          signed=False, supports_3d=True)
@checked(**_SG_RULES)
def smoothgrad_sq(ctx, n_samples=20, noise_level=0.1):
    """Mean squared gradient over noisy copies (Hooker et al. 2019)."""
    return _noise_moments(ctx, n_samples, noise_level)[1]


@register("vargrad", family="sampling", library="captum", cost=lambda p: p["n_samples"],
          signed=False, supports_3d=True)
@checked(**_SG_RULES)
def vargrad(ctx, n_samples=20, noise_level=0.1):
    """Variance of the gradient over noisy copies (Adebayo et al. 2018)."""
    mean, mean_sq = _noise_moments(ctx, n_samples, noise_level)
    return (mean_sq - mean.pow(2)).clamp_min(0)


def _baseline_set(ctx) -> torch.Tensor:
    """Two reference inputs shared by every chunk: black (zeros) and seeded unit Gaussian noise."""
    shape = (1, *ctx.inputs.shape[1:])
    noise = torch.randn(shape, generator=ctx.generator(-1), device=ctx.inputs.device, dtype=ctx.inputs.dtype)
    return torch.cat([torch.zeros(shape, device=ctx.inputs.device, dtype=ctx.inputs.dtype), noise])


# --- DeepLIFT and modified-ReLU backprop (private copy with fresh ReLUs) ------------------------------
@register("deeplift", family="gradient", library="captum", cost=2, private_copy=True,
          supports_3d=True)
@checked(baseline=real_number)
def deeplift(ctx, baseline=0.0):
    """DeepLIFT rescale rule from a constant baseline (Shrikumar et al. 2017)."""
    return DeepLift(ctx.head).attribute(ctx.inputs, baselines=float(baseline), target=ctx.target)


@register("deeplift_shap", family="sampling", library="captum", cost=4, private_copy=True, supports_3d=True)
def deeplift_shap(ctx):
    """DeepLIFT averaged over baselines {zeros, seeded noise} (DeepSHAP, Lundberg & Lee 2017)."""
    baselines = _baseline_set(ctx)
    per = max(1, ctx.memory.chunk // (2 * len(baselines)))
    explainer = DeepLiftShap(ctx.head)
    parts = []
    for start in range(0, len(ctx.inputs), per):
        target = None if ctx.target is None else ctx.target[start : start + per]
        parts.append(explainer.attribute(ctx.inputs[start : start + per], baselines=baselines, target=target))
    ctx.record["baselines"] = "zeros + seeded unit Gaussian noise"
    return torch.cat(parts)


def _init_head(ctx, relevance_init: str):
    """``ctx.head`` of this chunk with its backward starting from ``relevance_init`` (one-hot x logit, ...).

    Guided backprop and deconvnet are not scale-free (a ReLU acts on the backward signal, so a negative logit
    flips what passes), so the initial signal is injected, not multiplied onto the result afterwards.
    """
    ctx.head.spec = ctx.spec.scaled(check_relevance_init(relevance_init))
    return ctx.head


@register("guided_backprop", family="gradient", library="captum", cost=1, clean_forward=True, private_copy=True,
          supports_3d=True)
def guided_backprop(ctx, relevance_init="one_hot"):
    """Guided backpropagation: only positive gradients through ReLUs (Springenberg et al. 2015).

    ``relevance_init="logit"`` starts from one-hot x logit as iNNvestigate does (default: captum's one-hot).
    """
    return GuidedBackprop(_init_head(ctx, relevance_init)).attribute(ctx.inputs, target=ctx.target)


@register("deconvnet", family="gradient", library="captum", cost=1, clean_forward=True, private_copy=True,
          supports_3d=True)
def deconvnet(ctx, relevance_init="one_hot"):
    """DeconvNet: ReLU applied to the backward signal (Zeiler & Fergus 2014).

    ``relevance_init="logit"`` starts from one-hot x logit as iNNvestigate does (default: captum's one-hot).
    """
    return Deconvolution(_init_head(ctx, relevance_init)).attribute(ctx.inputs, target=ctx.target)


@register("guided_gradcam", family="cam", library="captum", cost=1.5, needs_layer=True, clean_forward=True,
          private_copy=True, supports_3d=True)
def guided_gradcam(ctx):
    """Guided backprop times the upsampled Grad-CAM of the layer (Selvaraju et al. 2017)."""
    mode = "bilinear" if ctx.inputs.ndim == 4 else "trilinear"
    return GuidedGradCam(ctx.head, ctx.layer).attribute(ctx.inputs, target=ctx.target, interpolate_mode=mode)


@register("layer_deeplift", family="cam", library="captum", cost=2, needs_layer=True, private_copy=True,
          supports_3d=True)
@checked(baseline=real_number)
def layer_deeplift(ctx, baseline=0.0):
    """DeepLIFT attribution of the layer's output, summed over channels and upsampled (Sümer et al. 2023)."""
    inputs = ctx.inputs.requires_grad_(True)  # captum's layer hooks need a graph from the input
    attr = LayerDeepLift(ctx.head, ctx.layer).attribute(inputs, baselines=float(baseline), target=ctx.target)
    return attr.sum(1, keepdim=True)


# --- perturbation ------------------------------------------------------------------------------------
@register("occlusion", family="perturbation", library="captum", cost=_windows, supports_3d=True)
@checked(window=window_size, stride=positive_int, baseline=real_number, _all=stride_within_window)
def occlusion(ctx, window=15, stride=8, baseline=0.0):
    """Drop in target score when a window x window patch (a window^3 cube for volumes) is set to the baseline
    (Zeiler & Fergus 2014)."""
    c, dims = ctx.inputs.shape[1], ctx.inputs.ndim - 2
    return Occlusion(ctx.head).attribute(
        ctx.inputs, sliding_window_shapes=(c, *[int(window)] * dims), strides=(c, *[int(stride)] * dims),
        baselines=float(baseline), target=ctx.target, perturbations_per_eval=_per_eval(ctx))


def superpixels(x: torch.Tensor, n_segments: int, compactness: float) -> torch.Tensor:
    """SLIC superpixels (scikit-image) per image: long ``N x 1 x H x W`` feature mask, labels from 0.

    Volumes (``N x C x D x H x W``) get SLIC supervoxels (``N x 1 x D x H x W``)."""
    from skimage.segmentation import slic

    masks = []
    for img in x.detach().cpu().double().numpy():
        lo, hi = img.min(), img.max()
        img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
        chan = np.moveaxis(img, 0, -1)
        seg = slic(chan if chan.shape[-1] > 1 else chan[..., 0], n_segments=int(n_segments),
                   compactness=float(compactness), start_label=0,
                   channel_axis=-1 if chan.shape[-1] > 1 else None)
        if seg.max() < 1:
            warnings.warn(f"SLIC found a single superpixel in an image of shape {img.shape}; using a regular grid "
                          f"of about {n_segments} squares for it instead.", stacklevel=4)
            seg = _grid(img.shape[1:], n_segments)
        masks.append(torch.from_numpy(seg.astype(np.int64)))
    return torch.stack(masks)[:, None].to(x.device)


def _grid(shape: tuple[int, ...], n_segments: int) -> np.ndarray:
    side = max(1, int(round((np.prod(shape) / n_segments) ** (1 / len(shape)))))
    cells = [np.arange(n) // side for n in shape]
    return np.ravel_multi_index(np.meshgrid(*cells, indexing="ij"), [int(c.max()) + 1 for c in cells])


_SP_RULES = {"n_segments": int_between(1, 100_000), "compactness": positive}


@register("feature_ablation", family="perturbation", library="captum", cost=lambda p: p["n_segments"] / 3 + 1,
          supports_3d=True)
@checked(**_SP_RULES, baseline=real_number)
def feature_ablation(ctx, n_segments=50, compactness=10.0, baseline=0.0):
    """Drop in target score when one SLIC superpixel is set to the baseline."""
    mask = superpixels(ctx.inputs, n_segments, compactness)
    ctx.record["superpixels"] = "skimage.segmentation.slic"
    return FeatureAblation(ctx.head).attribute(ctx.inputs, baselines=float(baseline), target=ctx.target,
                                               feature_mask=mask, perturbations_per_eval=_per_eval(ctx))


def _per_sample(ctx, explainer, n_samples, mask):
    parts = []
    for i in range(len(ctx.inputs)):
        target = None if ctx.target is None else ctx.target[i : i + 1]
        parts.append(explainer.attribute(ctx.inputs[i : i + 1], target=target, feature_mask=mask[i : i + 1],
                                         n_samples=int(n_samples),
                                         perturbations_per_eval=ctx.memory.chunk))
    return torch.cat(parts)


@register("lime", family="perturbation", library="captum", cost=lambda p: p["n_samples"] / 3, supports_3d=True)
@checked(**_SP_RULES, n_samples=_SAMPLES)
def lime(ctx, n_segments=50, compactness=10.0, n_samples=100):
    """LIME on SLIC superpixels with captum's default Lasso surrogate (Ribeiro et al. 2016)."""
    attr = _per_sample(ctx, Lime(ctx.head), n_samples, superpixels(ctx.inputs, n_segments, compactness))
    zero = [i for i in range(len(attr)) if not attr[i].any()]
    if zero:  # Lasso shrank every weight to 0: an empty map that says nothing, not "nothing matters"
        warnings.warn(f"lime: the surrogate (captum's Lasso) gave every superpixel weight 0 for {len(zero)} of "
                      f"{len(attr)} input(s) (positions {zero[:5]}): the score barely changed over the {n_samples} "
                      "samples, or the penalty is too strong for it. Such a map is no evidence that nothing "
                      "matters; use more n_samples / n_segments, or kernel_shap.", stacklevel=4)
    return attr


@register("kernel_shap", family="perturbation", library="captum", cost=lambda p: p["n_samples"] / 3, supports_3d=True)
@checked(**_SP_RULES, n_samples=_SAMPLES)
def kernel_shap(ctx, n_segments=50, compactness=10.0, n_samples=100):
    """Kernel SHAP on SLIC superpixels (Lundberg & Lee 2017)."""
    return _per_sample(ctx, KernelShap(ctx.head), n_samples, superpixels(ctx.inputs, n_segments, compactness))


@register("shapley_value_sampling", family="perturbation", library="captum",
          cost=lambda p: p["n_samples"] * p["n_segments"] / 3, supports_3d=True)
@checked(**_SP_RULES, n_samples=_SAMPLES, baseline=real_number)
def shapley_value_sampling(ctx, n_segments=16, compactness=10.0, n_samples=8, baseline=0.0):
    """Shapley value sampling (Castro et al. 2009) on SLIC superpixels: each superpixel's mean marginal effect
    over ``n_samples`` random orderings (captum ``ShapleyValueSampling``); efficiency: the attributions of an
    image sum to f(x) - f(baseline). Orderings come from each image's own seeded stream."""
    mask = superpixels(ctx.inputs, n_segments, compactness)
    explainer, parts = ShapleyValueSampling(ctx.head), []
    for i, stream in enumerate(ctx.index):
        target = None if ctx.target is None else ctx.target[i : i + 1]
        with torch.random.fork_rng(devices=[ctx.inputs.device] if ctx.inputs.device.type == "cuda" else []):
            torch.manual_seed(ctx.seed * 1_000_003 + int(stream))  # captum draws orderings with torch.randperm
            parts.append(explainer.attribute(ctx.inputs[i : i + 1], baselines=float(baseline), target=target,
                                             feature_mask=mask[i : i + 1], n_samples=int(n_samples),
                                             perturbations_per_eval=ctx.memory.chunk))
    ctx.record["superpixels"] = "skimage.segmentation.slic"
    return torch.cat(parts)


@register("linear_approximation", family="perturbation", library="captum", cost=lambda p: p["n_samples"] / 3,
          supports_3d=True)
@checked(**_SP_RULES, n_samples=_SAMPLES)
def linear_approximation(ctx, n_segments=50, compactness=10.0, n_samples=100):
    """LIME with an unregularised linear surrogate (captum ``Lime`` + ``SkLearnLinearRegression``) on SLIC
    superpixels: TorchEsegeta's "Linear Approximation" (a local linear model of the score)."""
    from captum._utils.models.linear_model import SkLearnLinearRegression

    explainer = Lime(ctx.head, interpretable_model=SkLearnLinearRegression())
    return _per_sample(ctx, explainer, n_samples, superpixels(ctx.inputs, n_segments, compactness))
