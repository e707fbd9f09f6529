"""Does an input look like the model's training data? A measured out-of-domain check carried by the checkpoint.

A model trained on phantom radiographs calls every real radiograph "pneumonia" with p > 0.99, silently. The
checkpoint therefore stores its training domain (:func:`fit_domain`, in ``summary["domain"]``) and the entry
points (:func:`xaikit.saliency.explain`, :func:`xaikit.train.assessment`) call :func:`check_domain`, which warns
with an :class:`OutOfDomainWarning` when inputs are far from it.

The features of one input are six image statistics of what the model sees (mean, standard deviation, fractions
of pixels below 0.05 and above 0.95, mean |Laplacian| for texture, left-right asymmetry) and the model's
penultimate-layer activations (the input of its last ``nn.Linear``). They are standardized with the training mean
and standard deviation and projected on the first ``n_components`` principal components of the training set. Two
distances: the root mean square of the whitened projections (a Mahalanobis distance in that subspace; Lee et al.,
"A simple unified framework for detecting out-of-distribution samples and adversarial attacks", NeurIPS 2018, use
penultimate features the same way) and the RMS residual outside the subspace (what the training data never
varied). Each has a threshold of ``margin`` times its largest training value; an input is out of domain when
either is exceeded (:func:`domain_distance` > 1). The residual matters: the whitened distance alone missed
6 of 40 real radiographs on the shortcut sample model and its result swung with ``n_components``.

Measured on the shipped sample models (8 components, margin 1.2): held-out test phantoms flagged 0 of 52
(clean) and 0 of 51 (shortcut), the 40 real radiographs of ``shared/real_cxr`` 40 of 40 for both; the same
held with 6 to 24 components. ``tests/test_domain.py`` checks both sides.

Everything stored is plain lists and numbers, so it travels in a ``weights_only`` checkpoint.
"""
from __future__ import annotations

import contextlib
import contextvars
import warnings
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from .errors import ArgumentError

__all__ = ["OutOfDomainWarning", "IMAGE_STATS", "domain_features", "fit_domain", "domain_distance", "check_domain",
           "watch_domain", "checked_once", "domain_check_off", "assess_domain", "warn_domain", "check_domain_many",
           "domain_message", "domain_columns",
           "domain_badge", "prediction_caption"]

#: The image statistics in a domain's feature vector, in order.
IMAGE_STATS = ("mean", "std", "dark_fraction", "bright_fraction", "laplacian", "asymmetry")
DOMAIN_METHOD = "pca_whitened_and_residual/v1"
# True while the kit runs the model on inputs it made itself (perturbed copies, randomized models): the user's
# inputs were checked once on the way in. A context variable, so threads and asyncio tasks each have their own.
_OFF: contextvars.ContextVar[bool] = contextvars.ContextVar("xaikit_domain_check_off", default=False)


class OutOfDomainWarning(UserWarning):
    """Inputs are far from the training data of the model: its outputs on them are not trustworthy."""


def _last_linear(model: nn.Module) -> nn.Linear | None:
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    return last


def _image_stats(x: torch.Tensor) -> torch.Tensor:
    plane = x.detach().float().mean(1)  # channel mean: grey images replicated for RGB networks
    dims = tuple(range(1, plane.ndim))  # (H, W), or (D, H, W) for volumes: texture and asymmetry per slice
    flat = plane.flatten(1)
    lap = (4 * plane[..., 1:-1, 1:-1] - plane[..., :-2, 1:-1] - plane[..., 2:, 1:-1] - plane[..., 1:-1, :-2]
           - plane[..., 1:-1, 2:]).abs().mean(dims)
    asym = (plane - plane.flip(-1)).abs().mean(dims)
    dark, bright = (flat < 0.05).float().mean(1), (flat > 0.95).float().mean(1)
    return torch.stack([flat.mean(1), flat.std(1), dark, bright, lap, asym], 1)


def _feature_hook(model: nn.Module):
    """Where the learned features come from: the input of the last ``nn.Linear`` (classifiers, box heads), else
    the channel means of the deepest encoder block's output (``model.encoders[-1]`` of a UNet)."""
    layer = _last_linear(model)
    if layer is not None:
        return layer, lambda module, inputs, output: inputs[0].detach().flatten(1).float().cpu()
    encoders = getattr(model, "encoders", None)
    if isinstance(encoders, nn.ModuleList) and len(encoders):
        return encoders[-1], lambda module, inputs, output: output.detach().flatten(2).mean(2).float().cpu()
    return None, None


@contextlib.contextmanager
def _penultimate(model: nn.Module) -> Iterator[list]:
    """Record the model's learned features (:func:`_feature_hook`) during forward passes; the hook is always
    removed."""
    (layer, take), seen = _feature_hook(model), []
    handle = None if layer is None else layer.register_forward_hook(
        lambda module, inputs, output: seen.append(take(module, inputs, output)))
    try:
        yield seen
    finally:
        if handle is not None:
            handle.remove()


def domain_features(model: nn.Module, x: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """``N x F`` features of inputs ``x`` (``N x C x H x W``, or ``N x C x D x H x W`` for volumes, preprocessed
    as the model sees them): the image statistics :data:`IMAGE_STATS`, then the model's learned features (the
    input of its last ``nn.Linear``; a UNet's deepest encoder channels). The model's mode is restored."""
    if not isinstance(x, torch.Tensor) or x.ndim not in (4, 5):
        raise ArgumentError("domain_features needs an N x C x H x W (or N x C x D x H x W) tensor; got "
                            f"{tuple(getattr(x, 'shape', ())) or type(x).__name__}.")
    was_training = model.training
    device = next(model.parameters()).device
    parts = []
    try:
        model.eval()
        with torch.no_grad(), _penultimate(model) as seen:
            for start in range(0, len(x), batch_size):
                chunk = x[start:start + batch_size]
                seen.clear()
                model(chunk.to(device))
                stats = _image_stats(chunk).cpu()
                parts.append(torch.cat([stats, seen[-1]], 1) if seen else stats)
    finally:
        model.train(was_training)
    return torch.cat(parts).double().numpy()


def fit_domain(model: nn.Module, x: torch.Tensor, *, n_components: int = 8, margin: float = 1.2,
               description: str = "") -> dict[str, Any]:
    """The training domain of ``model`` from its training inputs ``x`` (preprocessed), as plain values.

    Parameters
    ----------
    model : nn.Module
    x : tensor N x C x H x W
        The training images as the model sees them (no augmentation).
    n_components : int
        Principal components of the standardized training features kept.
    margin : float
        Each threshold is ``margin`` times the largest value of a training image.
    description : str
        What the data were, in words (shown in the warning).

    Returns
    -------
    dict
        Store it in the checkpoint summary as ``"domain"``.
    """
    feats = domain_features(model, x)
    # keep a residual outside the subspace (the second distance) even for few features
    n_components = min(n_components, feats.shape[1] - 1)
    if len(feats) <= n_components:
        raise ArgumentError(f"fit_domain needs more than n_components={n_components} images; got {len(feats)}.")
    mean, std = feats.mean(0), feats.std(0)
    # a floor for features (almost) constant in training, e.g. no dark pixels at all: without it one pixel of an
    # in-domain image would count as hundreds of standard deviations
    std = np.maximum(std, 0.05 * np.median(std) + 1e-6)
    z = (feats - mean) / std
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    domain = {"method": DOMAIN_METHOD, "description": description, "n_images": len(feats),
              "image_stats": list(IMAGE_STATS), "feature_mean": mean.tolist(), "feature_std": std.tolist(),
              "components": vt[:n_components].tolist(),
              "variances": (s[:n_components] ** 2 / (len(z) - 1)).tolist(), "margin": float(margin),
              "image_stats_mean": mean[:len(IMAGE_STATS)].tolist()}
    within, outside = _distances(domain, feats)
    domain["threshold"] = float(margin * within.max())
    domain["residual_threshold"] = float(margin * outside.max())
    return domain


def _distances(domain: dict[str, Any], features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whitened distance inside the principal subspace, and the RMS residual outside it."""
    mean, std = np.asarray(domain["feature_mean"]), np.asarray(domain["feature_std"])
    if features.shape[1] != len(mean):
        raise ArgumentError(f"the domain was fitted on {len(mean)} features but the inputs give {features.shape[1]}: "
                            "the model differs from the one the domain was fitted with.")
    z = (features - mean) / std
    components = np.asarray(domain["components"])
    proj = z @ components.T
    within = np.sqrt((proj ** 2 / np.asarray(domain["variances"])).mean(1))
    outside = np.sqrt(((z - proj @ components) ** 2).mean(1))
    return within, outside


def domain_distance(domain: dict[str, Any], features: np.ndarray) -> np.ndarray:
    """Distance of each row of ``features`` (:func:`domain_features`) from the stored domain, in units of its
    thresholds: the larger of (whitened distance in the principal subspace / its threshold) and (residual
    outside it / its threshold). Above 1 is out of domain."""
    within, outside = _distances(domain, features)
    return np.maximum(within / domain["threshold"], outside / domain["residual_threshold"])


def assess_domain(model: nn.Module, x: torch.Tensor) -> np.ndarray | None:
    """:func:`domain_distance` of each input ``x`` from the model's stored domain (``model.xaikit_domain``, set
    by :func:`xaikit.checkpoint.load_checkpoint`), without a warning; ``None`` for a model without one."""
    domain = getattr(model, "xaikit_domain", None)
    if not domain:
        return None
    return domain_distance(domain, domain_features(model, x))


def check_domain(model: nn.Module, x: torch.Tensor, *, where: str = "xaikit", stacklevel: int = 3) -> np.ndarray | None:
    """Warn (:class:`OutOfDomainWarning`) when inputs ``x`` are far from the model's training domain.

    Does nothing (returns ``None``) for a model without a stored domain (``model.xaikit_domain``, set by
    :func:`xaikit.checkpoint.load_checkpoint`); otherwise returns :func:`domain_distance` of each input.
    """
    domain = getattr(model, "xaikit_domain", None)
    if not domain or _OFF.get():
        return None
    feats = domain_features(model, x)
    dist = domain_distance(domain, feats)
    _warn(domain, dist, where, stacklevel + 1, feats)
    return dist


def domain_message(model: nn.Module, x: torch.Tensor, distances, *, where: str = "xaikit") -> str | None:
    """The text of the :class:`OutOfDomainWarning` for inputs ``x`` whose distances were already measured
    (:func:`assess_domain`), quoting their farthest image statistic; ``None`` when all are in domain (or the
    model has no stored domain)."""
    domain = getattr(model, "xaikit_domain", None)
    if not domain or distances is None:
        return None
    dist = np.asarray(distances, dtype=np.float64)
    far = dist > 1.0
    if not far.any():
        return None
    return _message(domain, dist, where, domain_features(model, x[torch.from_numpy(far)]), far_only=True)


def check_domain_many(model: nn.Module, batches: Iterable[torch.Tensor], *, where: str = "xaikit",
                      stacklevel: int = 3) -> np.ndarray | None:
    """:func:`check_domain` over several batches of inputs with one warning for all of them (a call that runs
    many batches, e.g. ``explain_many``, says it once); ``None`` for a model without a stored domain."""
    domain = getattr(model, "xaikit_domain", None)
    if not domain or _OFF.get():
        return None
    feats = np.concatenate([domain_features(model, x) for x in batches])
    dist = domain_distance(domain, feats)
    _warn(domain, dist, where, stacklevel + 1, feats)
    return dist


def warn_domain(model: nn.Module, x: torch.Tensor, distances, *, where: str = "xaikit", stacklevel: int = 2) -> None:
    """The warning of :func:`check_domain` for distances already measured (:func:`assess_domain`), once."""
    if _OFF.get():
        return
    text = domain_message(model, x, distances, where=where)
    if text:
        warnings.warn(text, OutOfDomainWarning, stacklevel=stacklevel + 1)


def domain_columns(distances, n: int) -> dict[str, Any]:
    """The ``domain_distance`` (float, NaN when not checked) and ``in_domain`` (nullable bool) columns of a table
    of ``n`` inputs, from :func:`assess_domain`'s result (``None``: the model has no stored domain)."""
    import pandas as pd

    if distances is None:
        return {"domain_distance": np.full(n, np.nan), "in_domain": pd.array([None] * n, dtype="boolean")}
    dist = np.asarray(distances, dtype=np.float64)
    return {"domain_distance": dist.round(4), "in_domain": pd.array(dist <= 1.0, dtype="boolean")}


def domain_badge(distance: float | None) -> str:
    """A short flag for titles and tables: ``in domain (0.62)``, ``OUT OF DOMAIN (2.3x threshold)`` or
    ``domain not checked`` (a model without a stored domain)."""
    if distance is None or not np.isfinite(distance):
        return "domain not checked"
    return f"in domain ({distance:.2f})" if distance <= 1.0 else f"OUT OF DOMAIN ({distance:.1f}x threshold)"


def prediction_caption(pred_class: str, prob: float, distance: float | None) -> str:
    """``predicted: pneumonia (p = 0.998) | OUT OF DOMAIN (2.3x threshold)``: what every overlay title says
    (:func:`domain_badge`; ``distance`` from :func:`assess_domain`)."""
    return f"predicted: {pred_class} (p = {prob:.3f}) | {domain_badge(distance)}"


@contextlib.contextmanager
def watch_domain(model: nn.Module, *, where: str = "xaikit") -> Iterator[None]:
    """Check every input the model sees inside the block (no extra forward pass); warn at the end as
    :func:`check_domain` does. Hooks are always removed; nothing is checked when the block raised."""
    domain = getattr(model, "xaikit_domain", None)
    if not domain or _OFF.get():
        yield
        return
    stats: list[torch.Tensor] = []
    handle = model.register_forward_pre_hook(lambda module, args: stats.append(_image_stats(args[0]).cpu()))
    try:
        with _penultimate(model) as seen:
            yield
    finally:
        handle.remove()
    if stats:
        feats = (torch.cat([torch.cat(stats), torch.cat(seen)], 1) if seen else torch.cat(stats)).double().numpy()
        _warn(domain, domain_distance(domain, feats), where, 4, feats)


@contextlib.contextmanager
def domain_check_off() -> Iterator[None]:
    """Inside the block no domain check runs (:func:`check_domain`, :func:`watch_domain`): for inputs the kit
    made itself, e.g. a metric's noisy or occluded copies of images that were already checked."""
    token = _OFF.set(True)
    try:
        yield
    finally:
        _OFF.reset(token)


@contextlib.contextmanager
def checked_once(model: nn.Module, x: torch.Tensor | None, *, where: str = "xaikit",
                 stacklevel: int = 3) -> Iterator[np.ndarray | None]:
    """Check the user's inputs ``x`` once (:func:`check_domain`), then run the block with the check off.

    What a metric feeds the model inside the block (perturbed copies, randomized model copies) is the kit's own
    making and far from the training data by design: warning about it would say nothing about the user's data.
    Yields the distances of ``x`` (``None`` for a model without a stored domain, inside an outer check, or for
    ``x=None``: nothing to check).
    ``stacklevel`` counts from the caller of the ``with`` statement's function (3: its caller's caller).
    """
    # stacklevel + 2: this generator's frame and contextlib's __enter__ sit between check_domain and the caller
    dist = None if x is None else check_domain(model, x, where=where, stacklevel=stacklevel + 2)
    with domain_check_off():
        yield dist


_STAT_WORDS = {"mean": "mean intensity", "std": "intensity spread (std)", "dark_fraction": "share of dark pixels",
               "bright_fraction": "share of bright pixels", "laplacian": "fine texture (mean |Laplacian|)",
               "asymmetry": "left-right asymmetry"}


def _farthest_stat(domain: dict, feats: np.ndarray) -> str:
    """The image statistic of the far inputs farthest from training, in words with the inputs' real values."""
    n = len(IMAGE_STATS)
    mean, std = np.asarray(domain["feature_mean"][:n]), np.asarray(domain["feature_std"][:n])
    seen = feats[:, :n]
    z = np.abs(seen.mean(0) - mean) / std
    k = int(np.argmax(z))
    lo, hi = seen[:, k].min(), seen[:, k].max()
    values = f"{lo:.3f}" if len(seen) == 1 else f"{lo:.3f} to {hi:.3f} (mean {seen[:, k].mean():.3f})"
    stat = f"{_STAT_WORDS[IMAGE_STATS[k]]} {values} against {mean[k]:.3f} +- {std[k]:.3f} in training"
    if z[k] < 2.0:  # no image statistic stands out: what the model computes from the input is what differs
        return f"the model's internal features differ, while the image statistics look ordinary (e.g. {stat})"
    return stat


def _message(domain: dict, dist: np.ndarray, where: str, feats: np.ndarray | None = None, *,
             far_only: bool = False) -> str | None:
    far = dist > 1.0
    if not far.any():
        return None
    what = domain.get("description") or "its training data"
    detail = "" if feats is None else "; " + _farthest_stat(domain, feats if far_only else feats[far])
    spread = f"{dist[far].min():.1f}" if far.sum() == 1 else f"{dist[far].min():.1f} to {dist[far].max():.1f}"
    return (f"{where}: {int(far.sum())} of {len(dist)} input(s) are far from the model's training domain "
            f"({spread} times the threshold{detail}; trained on {what}). Its "
            "predictions and saliency maps on these inputs are not trustworthy; use a model trained on data like "
            "yours (see Checkpoint.card).")


def _warn(domain: dict, dist: np.ndarray, where: str, stacklevel: int, feats: np.ndarray | None = None, *,
          far_only: bool = False) -> None:
    text = _message(domain, dist, where, feats, far_only=far_only)
    if text:
        warnings.warn(text, OutOfDomainWarning, stacklevel=stacklevel)
