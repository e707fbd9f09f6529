"""Targets: which output of the model a saliency map explains.

A target resolves to a :class:`TargetSpec` that turns logits into one scalar per sample. Index targets
(``"label"``, an int, a tensor) are passed to captum as ``target=``; ``"pred"`` and callables are folded into
the forward function so the arg-max is taken inside the method's own forward pass (no extra forward).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

import torch

from ..errors import ExplanationError

__all__ = ["TargetSpec", "resolve_target", "Target"]

Target = Union[str, int, torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]


@dataclass
class TargetSpec:
    """A resolved target.

    Attributes
    ----------
    policy : str
        ``"pred"``, ``"label"``, ``"index"`` or ``"callable"`` (recorded in the Explanation).
    indices : torch.Tensor or None
        Long tensor ``N`` of class indices, known before the method runs; ``None`` for lazy ``"pred"``
        and for callables.
    fn : callable or None
        For callables: logits ``N x K`` -> scores ``N``.
    """

    policy: str
    indices: torch.Tensor | None = None
    fn: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def folded(self) -> bool:
        """True when the target is applied inside the forward (lazy ``pred`` or a callable)."""
        return self.indices is None

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        """One differentiable scalar per sample."""
        if self.fn is not None:
            out = self.fn(logits)
            if out.ndim != 1 or out.shape[0] != logits.shape[0]:
                raise ExplanationError(
                    f"target callable must return one score per sample (shape ({logits.shape[0]},)); "
                    f"it returned shape {tuple(out.shape)}."
                )
            return out
        idx = self.indices if self.indices is not None else logits.argmax(1)
        return logits.gather(1, idx.to(logits.device).view(-1, 1)).squeeze(1)

    def head(self, logits: torch.Tensor) -> torch.Tensor:
        """What the forward handed to captum returns: logits for index targets, scores otherwise."""
        return self.score(logits) if self.folded else logits

    def captum_target(self) -> torch.Tensor | None:
        return self.indices

    def one_hot_grad(self, logits: torch.Tensor) -> torch.Tensor:
        """d(score)/d(logits): one-hot rows for index/pred targets, autograd for callables."""
        if self.fn is None:
            idx = self.indices if self.indices is not None else logits.argmax(1)
            return torch.nn.functional.one_hot(idx.to(logits.device), logits.shape[1]).to(logits.dtype)
        with torch.enable_grad():
            leaf = logits.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.score(leaf).sum(), leaf)
        return grad

    def relevance(self, logits: torch.Tensor) -> torch.Tensor:
        """Initial LRP relevance at the output: d(score)/d(logits) scaled by the score (one-hot x logit)."""
        if hasattr(self.fn, "relevance"):  # mask/box targets bring their own (masked logits)
            return self.fn.relevance(logits)
        return self.one_hot_grad(logits) * self.score(logits.detach())[:, None]

    def subset(self, sl: slice) -> "TargetSpec":
        idx = None if self.indices is None else self.indices[sl]
        fn = self.fn.subset(sl) if hasattr(self.fn, "subset") else self.fn  # per-image mask/box targets
        return TargetSpec(self.policy, idx, fn)


def resolve_target(
    target: Target, n: int, n_classes: int | None, labels: torch.Tensor | None, needs_indices: bool
) -> TargetSpec:
    """Check ``target`` and turn it into a :class:`TargetSpec`.

    ``needs_indices`` is set for methods that evaluate perturbed inputs: ``"pred"`` then needs the
    predictions first and is resolved by the caller (the spec returned has ``indices=None``).
    """
    if isinstance(target, str):
        if target == "pred":
            return TargetSpec("pred")
        if target == "label":
            if labels is None:
                raise ExplanationError(
                    'target="label" needs labels: pass labels=... (a tensor of N class indices) or a batch of '
                    'sample dicts with a "label" entry, or use target="pred".'
                )
            return TargetSpec("label", _check_indices(labels, n, n_classes, "labels"))
        raise ExplanationError(
            f'target must be "pred", "label", a class index, a tensor of N indices or a callable; got {target!r}.'
        )
    if callable(target) and not isinstance(target, torch.Tensor):
        return TargetSpec(getattr(target, "policy", "callable"), fn=target)
    if isinstance(target, bool):
        raise ExplanationError(f"target must be a class index, not a bool ({target!r}).")
    if isinstance(target, int):
        return TargetSpec("index", _check_indices(torch.full((n,), target), n, n_classes, "target"))
    if isinstance(target, torch.Tensor):
        if target.ndim == 0:
            target = target.expand(n)
        return TargetSpec("index", _check_indices(target, n, n_classes, "target"))
    raise ExplanationError(f"target of type {type(target).__name__} is not understood; see explain() docs.")


def _check_indices(idx: torch.Tensor, n: int, n_classes: int | None, what: str) -> torch.Tensor:
    idx = torch.as_tensor(idx)
    if idx.dtype.is_floating_point or idx.dtype == torch.bool:
        raise ExplanationError(f"{what} must hold integer class indices; got dtype {idx.dtype}.")
    idx = idx.long().reshape(-1)
    if idx.numel() != n:
        raise ExplanationError(f"{what} has {idx.numel()} entries but there are {n} inputs; give one per input.")
    if n_classes is not None and idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n_classes):
        raise ExplanationError(
            f"{what} holds class index {int(idx.max()) if int(idx.max()) >= n_classes else int(idx.min())} "
            f"but the model has {n_classes} outputs (valid: 0..{n_classes - 1})."
        )
    return idx


from .detection import detection  # noqa: E402  (targets.detection(...) and targets.segmentation(...):
from .seg_targets import segmentation  # noqa: E402  the named helpers live in their own modules)
