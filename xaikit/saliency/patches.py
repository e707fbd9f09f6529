"""Patch-wise explanation of volumes too large to explain whole (TorchEsegeta's approach, MONAI's blending).

The volume is cut into overlapping patches; each patch is explained on its own with :func:`explain` (the
model sees only the patch) and the patch maps are blended back into one volume map. Each patch contributes
with a weight that is a Gaussian (or constant) window times an *interior mask*: voxels closer than ``margin``
to a side of the patch that is not a side of the volume get weight 0, because there the patch's zero padding
replaces real neighbours and the map differs from the whole-volume one. With ``overlap >= 2 * margin``
every voxel is inside some patch's interior.

When the model's score is local and additive over space (a fully convolutional model summed over the
volume, e.g. a segmentation score) and ``margin`` covers the model's receptive field, the blended map
*equals* the whole-volume map (tested). For a classifier with global pooling each patch is explained
for its own class score, so the result is a mosaic of local explanations; that is what patch-wise
explanation means there, and it is recorded in the provenance (``params["patches"]``).

MONAI's ``sliding_window_inference`` does the same blending for predictions but not for attributions, which
need one :func:`explain` call per patch (model scoping, memory planning, targets); hence written here.
"""
from __future__ import annotations

import itertools
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ExplanationError, MemoryBudgetError
from .engine import explain
from .explanation import Explanation
from .memory import plan
from .safety import guarded

__all__ = ["explain_patches", "patch_starts", "blend_weights"]

BLENDS = ("gaussian", "constant")


def patch_starts(size: int, patch: int, overlap: int) -> list[int]:
    """First index of each patch along one axis: step ``patch - overlap``, the last patch flush with the end.

    Examples
    --------
    >>> patch_starts(20, 8, 4)
    [0, 4, 8, 12]
    >>> patch_starts(6, 8, 4)
    [0]
    """
    if patch >= size:
        return [0]
    starts = list(range(0, size - patch + 1, patch - overlap))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def blend_weights(patch: Sequence[int], start: Sequence[int], size: Sequence[int], margin: Sequence[int],
                  blend: str) -> torch.Tensor:
    """Weight of each voxel of one patch: the blending window times the interior mask (see the module docstring)."""
    axes = []
    for p, s, n, m in zip(patch, start, size, margin):
        idx = torch.arange(p, dtype=torch.float64)
        w = torch.ones(p, dtype=torch.float64) if blend == "constant" else torch.exp(
            -0.5 * ((idx - (p - 1) / 2) / (0.125 * p)) ** 2)  # MONAI's sigma_scale = 0.125
        if s > 0:
            w[:m] = 0.0
        if s + p < n:
            w[p - m:] = 0.0
        axes.append(w)
    out = axes[0]
    for w in axes[1:]:
        out = out[..., None] * w
    return out


def explain_patches(model: nn.Module, inputs: torch.Tensor, method: str, target: Any = "pred", *,
                    patch: int | Sequence[int] = 64, overlap: int | Sequence[int] | None = None,
                    margin: int | Sequence[int] | None = None, blend: str = "gaussian",
                    labels: Any = None, image_ids: Sequence[str] | None = None, memory_budget: int | None = None,
                    seed: int = 0, **params: Any) -> Explanation:
    """Explain ``N x C x D x H x W`` volumes patch by patch and blend the patch maps into volume maps.

    Parameters
    ----------
    model, inputs, method, target
        As for :func:`explain`. ``target="pred"`` is resolved once on the whole volumes (one forward
        without gradients), so every patch explains the same class.
    patch : int or (int, int, int)
        Patch size in voxels (clipped to the volume).
    overlap : int or (int, int, int), optional
        Overlap of neighbouring patches; default ``patch // 4``.
    margin : int or (int, int, int), optional
        Border of each patch (inside the volume) that gets weight 0; default ``overlap // 2``. Needs
        ``overlap >= 2 * margin``.
    blend : {"gaussian", "constant"}
        Window for averaging overlapping patches.
    labels, image_ids, memory_budget, seed, **params
        As for :func:`explain`; each patch runs within ``memory_budget``.

    Returns
    -------
    Explanation
        Maps ``N x D x H x W``; ``params["patches"]`` records patch, overlap, margin, blend and the count.

    Examples
    --------
    >>> from xaikit.models import build_model
    >>> net = build_model("small_cnn3d", num_classes=2).eval()
    >>> exp = explain_patches(net, torch.rand(1, 1, 24, 24, 24), "gradient", target=1, patch=16, overlap=8)
    >>> tuple(exp.maps.shape), exp.params["patches"]["n_patches"]
    ((1, 24, 24, 24), 8)
    """
    if not isinstance(inputs, torch.Tensor) or inputs.ndim != 5:
        shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise ExplanationError(f"explain_patches takes volumes N x C x D x H x W; got {shape}. "
                               "Use explain() for images.")
    size = tuple(int(s) for s in inputs.shape[2:])
    patch = tuple(min(p, s) for p, s in zip(_triple(patch, "patch", 1), size))
    overlap = tuple(min(o, p - 1) for o, p in zip(_triple(overlap, "overlap", 0) if overlap is not None
                                                   else tuple(p // 4 for p in patch), patch))
    margin = _triple(margin, "margin", 0) if margin is not None else tuple(o // 2 for o in overlap)
    _check_layout(patch, overlap, margin, size, blend)
    _check_budget(model, inputs, patch, memory_budget, method)
    record = {"patch": list(patch), "overlap": list(overlap), "margin": list(margin), "blend": blend}
    if isinstance(target, str) and target == "pred":
        record["target"] = "pred, resolved once on the whole volumes"
    target, labels = _fixed_target(model, inputs, target, labels)
    starts = list(itertools.product(*(patch_starts(s, p, o) for s, p, o in zip(size, patch, overlap))))
    total = torch.zeros(len(inputs), *size, dtype=torch.float64)
    weight = torch.zeros(size, dtype=torch.float64)
    first = None
    for start in starts:
        sl = tuple(slice(s, s + p) for s, p in zip(start, patch))
        exp = explain(model, inputs[(slice(None), slice(None), *sl)], method, target, labels=labels,
                      image_ids=image_ids, memory_budget=memory_budget, seed=seed, keep_raw=False, **params)
        w = blend_weights(patch, start, size, margin, blend)
        total[(slice(None), *sl)] += exp.maps.double() * w
        weight[sl] += w
        first = exp if first is None else first
    maps = (total / weight).float()
    return _assemble(model, inputs, first, maps, {**record, "n_patches": len(starts)})


def _assemble(model, inputs, first: Explanation, maps: torch.Tensor, record: dict) -> Explanation:
    """The first patch's provenance with the blended maps and the whole-volume predictions."""
    with torch.no_grad():
        logits = model(inputs).float()
    probs = torch.softmax(logits, 1).cpu()
    policy = "pred" if "target" in record else first.target_policy  # "pred" was fixed once on the whole volumes
    params = {k: v for k, v in first.params.items() if k not in ("max_batch", "per_sample_bytes")}
    return Explanation(maps=maps, method=first.method, params={**params, "patches": record},
                       target_policy=policy, targets=first.targets, preds=logits.argmax(1).cpu(), probs=probs,
                       image_ids=first.image_ids, labels=first.labels, raw=None, reduction=first.reduction,
                       versions=first.versions)


def _fixed_target(model: nn.Module, inputs: torch.Tensor, target: Any, labels: Any):
    if isinstance(target, str) and target == "pred":

        with guarded(model), torch.no_grad():
            return model(inputs).argmax(1), labels
    return target, labels


def _check_layout(patch, overlap, margin, size, blend) -> None:
    if blend not in BLENDS:
        raise ExplanationError(f"blend={blend!r} is not known; use one of {list(BLENDS)}.")
    for axis, (p, o, m, s) in enumerate(zip(patch, overlap, margin, size)):
        if p < s and o < 2 * m:
            raise ExplanationError(f"overlap={o} along axis {axis} is smaller than 2 x margin={m}: some voxels would "
                                   "lie in no patch's interior. Raise overlap or lower margin.")
        if p < s and 2 * m >= p:
            raise ExplanationError(f"margin={m} along axis {axis} leaves no interior in a patch of {p} voxels.")


def _check_budget(model, inputs, patch, budget, method) -> None:
    probe = inputs[:1, :, : patch[0], : patch[1], : patch[2]]
    try:
        with guarded(model):
            plan(model, probe, budget, method)
    except MemoryBudgetError as exc:
        raise MemoryBudgetError(
            f"even one patch of {patch} voxels does not fit memory_budget for {method!r} ({exc}). "
            "Use a smaller patch=, raise memory_budget, or resample the volume to a coarser spacing "
            "(VolumePreprocess(spacing=...)).") from None


def _triple(value: Any, name: str, low: int) -> tuple[int, int, int]:
    values = (value,) * 3 if np.ndim(value) == 0 else tuple(value)
    if len(values) != 3 or any(isinstance(v, bool) or int(v) != v or int(v) < low for v in values):
        raise ExplanationError(f"{name}={value!r}: give an int >= {low} or three of them (D, H, W).")
    return tuple(int(v) for v in values)
