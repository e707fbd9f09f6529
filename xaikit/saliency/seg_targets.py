"""Segmentation targets: explain "why are these pixels this class" as one score per image.

``targets.segmentation(class_index, mask=...)`` explains the sum (or mean) of one class's logits over a mask of
a segmentation model's output ``N x K x H x W``: the predicted mask of that class (``"pred"``), a ground-truth
mask, one region of a :class:`~xaikit.regions.RegionSet`, or a box. Every method in ``METHODS`` accepts it
(the TorchEsegeta / pytorch-grad-cam ``SemanticSegmentationTarget`` idea, Chatterjee et al. 2022).

How the engine uses it (see :func:`xaikit.saliency.explain`): before the method runs, the target is *bound*
to the model's clean outputs, so the mask is a constant. Interpolated (integrated gradients), noisy
(SmoothGrad) and perturbed (occlusion, LIME) copies of an image are all scored on the same pixels, which keeps
completeness for path methods and makes perturbation scores comparable. Each image is explained in its own
chunk, so expanded batches (whatever their layout) all belong to one image and one mask. For LRP the output
relevance is the masked logits themselves (``d score / d logits x logits``), so relevance sums to the score.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ExplanationError

__all__ = ["SegmentationTarget", "MaskedLogits", "segmentation", "REDUCES"]

REDUCES = ("sum", "mean")


def segmentation(class_index: int, mask: Any = "pred", *, region: str | None = None, box: Any = None,
                 reduce: str = "sum") -> "SegmentationTarget":
    """A target for segmentation models: class ``class_index``'s logits summed (or averaged) over a mask.

    Parameters
    ----------
    class_index : int
        Output channel of the model (``N x K x H x W``) to explain.
    mask : "pred", array-like or RegionSet
        ``"pred"``: the pixels the model assigns to ``class_index`` (arg-max over channels, on the clean
        input). A boolean ``H x W`` mask (shared) or ``N x H x W`` (one per image), e.g. ground truth. A
        :class:`~xaikit.regions.RegionSet` together with ``region=`` (one of its names). Ignored with ``box``.
    region : str, optional
        Region name when ``mask`` is a RegionSet.
    box : sequence of 4 numbers or array N x 4, optional
        Pixel box ``(x0, y0, x1, y1)`` (torchvision order, end exclusive): the mask is the box.
    reduce : "sum" or "mean"
        Sum of the masked logits, or their mean over the mask.

    Examples
    --------
    >>> import torch
    >>> from xaikit.saliency import explain, targets
    >>> net = torch.nn.Conv2d(1, 3, 3, padding=1).eval()
    >>> exp = explain(net, torch.rand(2, 1, 16, 16), "gradient", targets.segmentation(1, box=(2, 2, 8, 8)))
    >>> exp.target_policy
    'segmentation'
    """
    if isinstance(class_index, bool) or not isinstance(class_index, (int, np.integer)):
        raise ExplanationError(f"segmentation target: class_index must be an int (an output channel); "
                               f"got {class_index!r}.")
    if reduce not in REDUCES:
        raise ExplanationError(f"segmentation target: reduce={reduce!r} is not known; use one of {list(REDUCES)}.")
    return SegmentationTarget(int(class_index), mask, region, box, reduce)


@dataclass(frozen=True, eq=False)
class SegmentationTarget:
    """An unbound segmentation target (see :func:`segmentation`); the engine binds it with :meth:`bind`."""

    class_index: int
    mask: Any = "pred"
    region: str | None = None
    box: Any = None
    reduce: str = "sum"
    policy = "segmentation"

    def prepare(self, model: nn.Module, info: Any = None) -> nn.Module:
        """The module to explain: the segmentation model itself (every method supports mask targets)."""
        return model

    def bind(self, logits: torch.Tensor) -> "MaskedLogits":
        """Resolve the masks against the clean outputs ``N x K x H x W``; check shapes, class and emptiness."""
        if logits.ndim < 4:
            raise ExplanationError(
                f"segmentation target: the model returns shape {tuple(logits.shape)}, not N x K x H x W (or "
                "N x K x D x H x W); use a class index or callable target for classifiers.")
        n, k = logits.shape[:2]
        if not 0 <= self.class_index < k:
            raise ExplanationError(f"segmentation target: class_index={self.class_index} is out of range; the "
                                   f"model has {k} output channels (valid: 0..{k - 1}).")
        masks = self._masks(logits)
        if masks.shape[1:] != logits.shape[2:] or masks.shape[0] not in (1, n):
            raise ExplanationError(
                f"segmentation target: the mask has shape {tuple(masks.shape)} but the model's output is "
                f"{tuple(logits.shape)}; give one mask of shape {tuple(logits.shape[2:])} or {n} of them "
                "(resize masks to the model's input size, e.g. RegionSet.resize or RegionSet.apply(preprocess)).")
        masks = masks.expand(n, *masks.shape[1:])
        empty = torch.nonzero(masks.flatten(1).sum(1) == 0).flatten().tolist()
        if empty:
            raise ExplanationError(
                f"segmentation target: the {self._describe()} is empty for image(s) {empty[:10]}; there is "
                "nothing to explain there. Drop those images or choose another mask/class.")
        return MaskedLogits(self.class_index, masks.float(), self.reduce)

    def _masks(self, logits: torch.Tensor) -> torch.Tensor:
        if self.box is not None:
            return _box_masks(self.box, logits.shape[0], tuple(logits.shape[2:]))
        if isinstance(self.mask, str):
            if self.mask != "pred":
                raise ExplanationError(f'segmentation target: mask={self.mask!r} is not known; use "pred", a '
                                       "boolean mask, a RegionSet with region=..., or box=(x0, y0, x1, y1).")
            return logits.argmax(1) == self.class_index
        if type(self.mask).__name__ == "RegionSet":  # duck-typed: regions sit downstream of saliency
            return _region_masks(self.mask, self.region)
        return _bool_tensor(self.mask, "mask")

    def select(self, index) -> "SegmentationTarget":
        """The target for a subset of the images (``explain_many`` batches): per-image masks/boxes are indexed."""
        index = torch.as_tensor(index, dtype=torch.long)
        if self.box is not None:
            boxes = torch.as_tensor(np.asarray(self.box, dtype=np.float64)).reshape(-1, 4)
            return replace(self, box=boxes if len(boxes) == 1 else boxes[index])
        if isinstance(self.mask, str):
            return self
        masks = _region_masks(self.mask, self.region) if type(self.mask).__name__ == "RegionSet" else \
            _bool_tensor(self.mask, "mask")
        return replace(self, mask=masks if len(masks) == 1 else masks[index], region=None)

    def _describe(self) -> str:
        if self.box is not None:
            return "box"
        if isinstance(self.mask, str):
            return f"predicted mask of class {self.class_index}"
        return f"region {self.region!r}" if self.region is not None else "mask"


class MaskedLogits:
    """A bound segmentation target: ``logits R x K x H x W -> R`` scores, masks fixed per image.

    Attributes
    ----------
    class_index : int
    masks : torch.Tensor
        float ``N x H x W`` (0/1).
    reduce : str
    per_image : bool
        Always True: the engine explains one image per chunk, so rows of an expanded batch share one mask.
    policy : str
        ``"segmentation"`` (recorded in the Explanation).
    """

    per_image = True
    policy = "segmentation"

    def __init__(self, class_index: int, masks: torch.Tensor, reduce: str):
        self.class_index = class_index
        self.masks = masks
        self.reduce = reduce

    @property
    def targets(self) -> torch.Tensor:
        """The explained class per image (long ``N``)."""
        return torch.full((len(self.masks),), self.class_index, dtype=torch.long)

    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        """``d score / d logits``: the (normalized) mask on the class channel, zeros elsewhere."""
        masks = self.masks.to(device=logits.device, dtype=logits.dtype)
        if masks.shape[1:] != logits.shape[2:] or (len(masks) != 1 and len(masks) != len(logits)):
            raise ExplanationError(
                f"segmentation target: masks of shape {tuple(masks.shape)} do not fit outputs of shape "
                f"{tuple(logits.shape)}.")
        if self.reduce == "mean":
            masks = masks / masks.flatten(1).sum(1).view(-1, *([1] * (masks.ndim - 1)))
        out = torch.zeros_like(logits)
        out[:, self.class_index] = masks
        return out

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return (self.weights(logits) * logits).flatten(1).sum(1)

    def relevance(self, logits: torch.Tensor) -> torch.Tensor:
        """Initial LRP relevance: the masked (weighted) logits, which sum to the score."""
        return self.weights(logits) * logits.detach()

    def subset(self, sl: slice) -> "MaskedLogits":
        return MaskedLogits(self.class_index, self.masks[sl], self.reduce)


def _bool_tensor(mask: Any, what: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask).detach().cpu()
    if t.dtype != torch.bool:
        if t.dtype.is_floating_point or not bool(((t == 0) | (t == 1)).all()):
            raise ExplanationError(f"segmentation target: {what} must be boolean (or 0/1 integers); "
                                   f"got dtype {t.dtype}.")
        t = t.bool()
    if t.ndim == 2:
        t = t[None]
    if t.ndim != 3:
        raise ExplanationError(f"segmentation target: {what} must be H x W or N x H x W; got shape {tuple(t.shape)}.")
    return t


def _region_masks(regions: Any, name: str | None) -> torch.Tensor:
    if name is None or name not in regions.names:
        raise ExplanationError(f"segmentation target: with a RegionSet as mask, give region= one of "
                               f"{list(regions.names)}; got {name!r}.")
    return _bool_tensor(regions[name], f"region {name!r}")


def _box_masks(box: Any, n: int, shape: tuple[int, ...]) -> torch.Tensor:
    boxes = torch.as_tensor(np.asarray(box, dtype=np.float64)).reshape(-1, 4) if len(shape) == 2 else None
    if boxes is None or boxes.shape[0] not in (1, n):
        raise ExplanationError(f"segmentation target: box must be (x0, y0, x1, y1) or one such row per image "
                               f"({n}) on a 2D output; got {box!r}.")
    ys, xs = torch.arange(shape[0])[:, None], torch.arange(shape[1])[None, :]
    out = [(xs >= b[0]) & (xs < b[2]) & (ys >= b[1]) & (ys < b[3]) for b in boxes.tolist()]
    return torch.stack(out)
