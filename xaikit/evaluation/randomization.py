"""Randomization sanity checks (Adebayo et al. 2018), scored: does the map change when the model does?

Layers are randomized top layer first on a *copy* of the model, the way Quantus' ``MPRT`` does it
(``reset_parameters()`` after ``torch.manual_seed(seed + 1)`` for every module that has it, so both give the
same weights): *cascading* randomizes every layer from the top down to the current one, *independent* only the
current one. Each stage's maps are compared with the original maps per image by four similarities:
``spearman_abs`` (rank correlation of |map|; Quantus' MPRT default), ``spearman`` (signed), ``ssim`` (of |map|
scaled to [0, 1], scikit-image) and ``hog`` (Pearson correlation of HOG features of |map|, scikit-image).
A method whose maps stay similar after the weights are destroyed does not explain the model (lower is better).

Each stage costs one batch explanation of the inputs; the per-layer random weights are drawn once and serve
both orders and every method of a :func:`score_many` call.
"""
from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import torch
from scipy import stats
from torch import nn

from ..checkpoint import load_checkpoint
from ..errors import ArgumentError, ModelError
from .context import EvalContext
from .registry import register_metric

__all__ = ["SIMILARITIES", "STAGES", "randomizable_layers", "randomization_stages", "similarity"]

SIMILARITIES = ("spearman_abs", "spearman", "ssim", "hog")


def randomizable_layers(model: nn.Module) -> list[str]:
    """Names of the modules that ``reset_parameters()`` re-initializes, top (output) layer first."""
    names = [name for name, m in model.named_modules() if hasattr(m, "reset_parameters")
             and any(True for _ in m.parameters(recurse=False))]
    if not names:
        raise ModelError(f"model {type(model).__name__} has no layer with parameters to randomize (no module with "
                         "reset_parameters() and weights); randomization checks need a trainable model.")
    return names[::-1]


def _random_states(ctx: EvalContext, seed: int) -> dict[str, dict]:
    """Per layer, the re-initialized parameters and buffers (drawn once per model and seed)."""
    key = ("random_states", seed)
    if key not in ctx.shared:
        states = {}
        for name in randomizable_layers(ctx.model):
            module = copy.deepcopy(ctx.model.get_submodule(name))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + 1)
                module.reset_parameters()
            states[name] = {k: v.detach().clone() for k, v in module.state_dict().items()}
        ctx.shared[key] = states
    return ctx.shared[key]


#: Bytes of randomized model copies one score_many call keeps for reuse by every method.
STAGE_CACHE_BYTES = 1024**3


def _stage_model(ctx: EvalContext, randomized: Sequence[str], states: dict, seed: int) -> nn.Module:
    """The model with ``randomized`` layers re-initialized: one copy per stage and seed for a whole score_many call
    (every method and both orders reuse it; explain leaves a model exactly as it found it), so the copy, and the
    saliency memory plan's probe of it, is made once, not once per method."""
    key = ("stage_model", tuple(randomized), seed)
    if key in ctx.shared:
        return ctx.shared[key]
    model = _randomized_copy(ctx, randomized, states)
    size = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    kept = ctx.shared.get(("stage_model_bytes",), 0)
    if kept + size <= STAGE_CACHE_BYTES:  # a deep cascade of a large model: the copies past the budget are remade
        ctx.shared[key], ctx.shared[("stage_model_bytes",)] = model, kept + size
    return model


def _randomized_copy(ctx: EvalContext, randomized: Sequence[str], states: dict) -> nn.Module:
    model = copy.deepcopy(ctx.model)
    with torch.no_grad():
        for name in randomized:
            model.get_submodule(name).load_state_dict(states[name])
    if randomized and hasattr(model, "xaikit_domain"):
        # the checkpoint's training-domain statistics describe the trained weights, not a randomized copy (whose
        # features are far from them by design): no OutOfDomainWarning for what the check itself did
        del model.xaikit_domain
    return model


#: How the model is cut into randomization stages: every layer with weights (BatchNorm layers are stages of their
#: own), or blocks (a convolution or linear layer together with the BatchNorm right after it, as Adebayo et al.
#: 2018 randomized Inception blocks): fewer stages, so fewer re-explanations.
STAGES = ("layer", "block")
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def randomization_stages(model: nn.Module, stages: str = "layer") -> list[tuple[str, list[str]]]:
    """The randomization stages of ``model``, top first: ``[(stage name, [module names]), ...]``.

    ``stages="layer"``: one stage per layer with weights (:func:`randomizable_layers`). ``stages="block"``: a
    BatchNorm that directly follows a convolution or linear layer (in the model's module order) joins it; the
    stage is named ``"<conv>+<bn>"``.

    Examples
    --------
    >>> from xaikit.models import build_model
    >>> net = build_model("small_cnn", num_classes=2, widths=(8, 16))
    >>> [name for name, _ in randomization_stages(net, "block")]
    ['classifier', 'features.1.0+features.1.1', 'features.0.0+features.0.1']
    """
    if stages not in STAGES:
        raise ArgumentError(f"stages={stages!r} must be one of {STAGES}.")
    names = randomizable_layers(model)
    if stages == "layer":
        return [(n, [n]) for n in names]
    groups: list[list[str]] = []
    for name in names[::-1]:  # module order, bottom first
        joins = (groups and len(groups[-1]) == 1 and isinstance(model.get_submodule(name), _NORMS)
                 and isinstance(model.get_submodule(groups[-1][0]), _WEIGHTED))
        groups[-1].append(name) if joins else groups.append([name])
    return [("+".join(g), g) for g in groups[::-1]]


def _stages(ctx: EvalContext, order: str, layers: Sequence[str] | None, include_original: bool, stages: str):
    groups = randomization_stages(ctx.model, stages)
    names = [name for name, _ in groups]
    chosen = names if layers is None else list(layers)
    unknown = [n for n in chosen if n not in names]
    if unknown:
        raise ArgumentError(f"layers={unknown} are not randomization stages of the model (stages={stages!r}); "
                            f"choose from {names}.")
    out = [("none", 0, [])] if include_original else []
    for k, (name, modules) in enumerate(groups):
        if name in chosen:  # always top-down
            above = [m for _, group in groups[: k + 1] for m in group]
            out.append((name, k + 1, above if order == "cascading" else list(modules)))
    return out


def similarity(a: np.ndarray, b: np.ndarray, kind: str) -> np.ndarray:
    """Per-row similarity of two stacks of maps ``N x H x W`` (see the module docstring for the kinds)."""
    n = len(a)
    if kind in ("spearman_abs", "spearman"):
        fa, fb = a.reshape(n, -1), b.reshape(n, -1)
        if kind == "spearman_abs":
            fa, fb = np.abs(fa), np.abs(fb)
        return _pearson(stats.rankdata(fa, axis=1), stats.rankdata(fb, axis=1))
    if kind == "ssim":
        from skimage.metrics import structural_similarity

        return np.array([structural_similarity(x, y, data_range=1.0) if np.isfinite(x).all() and np.isfinite(y).all()
                         else np.nan for x, y in zip(_unit(a), _unit(b))])
    if kind == "hog":
        return np.array([_hog_similarity(x, y) for x, y in zip(_unit(a), _unit(b))])
    raise ArgumentError(f"similarity {kind!r} is not one of {SIMILARITIES}.")


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


def _unit(maps: np.ndarray) -> np.ndarray:
    mag = np.abs(maps)
    peak = mag.reshape(len(maps), -1).max(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return mag / np.where(peak > 0, peak, np.nan)[:, None, None]


def _hog_similarity(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.feature import hog

    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return np.nan
    cell = max(4, min(a.shape) // 16)
    ha = hog(a, pixels_per_cell=(cell, cell), cells_per_block=(2, 2))
    hb = hog(b, pixels_per_cell=(cell, cell), cells_per_block=(2, 2))
    return float(_pearson(ha[None], hb[None])[0])


def _kinds(similarities) -> tuple[str, ...]:
    kinds = tuple(similarities)
    bad = [k for k in kinds if k not in SIMILARITIES]
    if bad or not kinds:
        raise ArgumentError(f"similarities={list(kinds)} must be a non-empty list from {SIMILARITIES}.")
    return kinds


def _randomization(ctx: EvalContext, order: str, similarities, layers, include_original: bool, seed: int | None,
                   stages: str = "layer"):
    kinds = _kinds(similarities)
    seed = ctx.seed if seed is None else int(seed)
    states = _random_states(ctx, seed)
    original = ctx.maps.numpy()
    index = torch.arange(len(ctx))
    parts = []
    for name, position, randomized in _stages(ctx, order, layers, include_original, stages):
        maps = ctx.explain(ctx.inputs, index, model=_stage_model(ctx, randomized, states, seed)).numpy()
        ctx.cache.setdefault(("randomized_maps", order, seed), {})[name] = maps
        for kind in kinds:
            parts.append(({"layer": name, "layer_index": position, "similarity": kind},
                          similarity(original, maps, kind)))
    return parts


_RANDOM_DEFAULTS = {"similarities": SIMILARITIES, "layers": None, "include_original": False, "stages": "layer"}


@register_metric("cascading_randomization", family="randomization", higher_is_better=False, reexplains=True,
                 quantus="MPRT", defaults=dict(_RANDOM_DEFAULTS))
def cascading_randomization(ctx: EvalContext, similarities=SIMILARITIES, layers=None, include_original: bool = False,
                            stages: str = "layer"):
    """Similarity of the maps to the original after randomizing the model from the top layer down to each layer.

    One row per image, layer and similarity. ``layers`` limits the stages reported (the cascade still randomizes
    every layer above each); ``include_original=True`` adds stage ``"none"`` (nothing randomized: similarity 1
    up to the method's own randomness); ``stages="block"`` randomizes a convolution and its BatchNorm as one
    stage (:func:`randomization_stages`; the ``stages`` column records which). Adebayo et al. 2018 (NeurIPS),
    cascading model-parameter randomization.
    """
    return _randomization(ctx, "cascading", similarities, layers, include_original, None, stages)


@register_metric("independent_randomization", family="randomization", higher_is_better=False, reexplains=True,
                 quantus="MPRT", defaults=dict(_RANDOM_DEFAULTS))
def independent_randomization(ctx: EvalContext, similarities=SIMILARITIES, layers=None,
                              include_original: bool = False, stages: str = "layer"):
    """Similarity of the maps to the original after randomizing one stage at a time (the others kept).

    ``stages`` as in :func:`cascading_randomization`. Adebayo et al. 2018 (NeurIPS), independent
    model-parameter randomization.
    """
    return _randomization(ctx, "independent", similarities, layers, include_original, None, stages)


@register_metric("data_randomization", family="randomization", higher_is_better=False, reexplains=True,
                 needs_reference=True, defaults={"reference": None, "similarities": SIMILARITIES})
def data_randomization(ctx: EvalContext, reference=None, similarities=SIMILARITIES):
    """Similarity of the maps to those of a model of the same architecture trained on *permuted labels*.

    ``reference`` is the checkpoint path of that model (for the kit's worlds:
    ``xaikit.worlds.world_model_path("label_random")``) or the model itself (left unchanged: a copy is explained).
    A model trained on random labels has learnt nothing about the task, so a method that explains the model gives
    it different maps (lower is better); maps that stay alike show the method's own structure (edges, the input).
    Adebayo et al. 2018 (NeurIPS), data randomization.
    """

    kinds = _kinds(similarities)
    if reference is None:
        raise ArgumentError("data_randomization needs reference=<checkpoint path or model> of the same architecture "
                            "trained on permuted labels (e.g. xaikit.worlds.world_model_path('label_random') for the "
                            "worlds' models).")
    other = copy.deepcopy(reference) if isinstance(reference, nn.Module) else load_checkpoint(reference).model
    if hasattr(other, "xaikit_domain"):  # its training domain is not the explained model's
        del other.xaikit_domain
    try:
        maps = ctx.explain(ctx.inputs, torch.arange(len(ctx)), model=other).numpy()
    except RuntimeError as err:
        raise ArgumentError(f"reference={str(reference)!r}: its model cannot explain these inputs ({err}); give a "
                            "model of the same architecture and input size as the one explained.") from err
    original = ctx.maps.numpy()
    return [({"similarity": kind}, similarity(original, maps, kind)) for kind in kinds]
