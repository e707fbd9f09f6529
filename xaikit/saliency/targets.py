"""Targets: which output of the model a saliency map explains.

A target resolves to a :class:`TargetSpec` that turns logits into one scalar per sample. Index targets
(``"label"``, an int, a tensor) are passed to captum as ``target=``; ``"pred"`` and callables are folded into
the forward function so the arg-max is taken inside the method's own forward pass (no extra forward).

Relevance initialization (:data:`RELEVANCE_INITS`): what a method that propagates a signal backwards (LRP,
guided backprop, deconvnet) puts on the output before propagating. ``"logit"``: the target score times
d(score)/d(logits) (one-hot x logit: iNNvestigate's convention for LRP, deconvnet and guided backprop, and
what makes relevance sum to the logit); ``"one_hot"``: d(score)/d(logits) alone (captum's convention,
zennit's examples); ``"softmax"``: one-hot x the softmax probability of the target class.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

import torch

from ..errors import ExplanationError

__all__ = ["TargetSpec", "resolve_target", "Target", "RELEVANCE_INITS", "check_relevance_init", "detection",
           "segmentation"]

Target = Union[str, int, torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]

RELEVANCE_INITS = ("logit", "one_hot", "softmax")


def check_relevance_init(init: str) -> str:
    """``init`` if it is one of :data:`RELEVANCE_INITS`, else an :class:`ExplanationError`."""
    if init not in RELEVANCE_INITS:
        raise ExplanationError(
            f"relevance_init={init!r} is not known; use one of {list(RELEVANCE_INITS)} (\"logit\": one-hot x "
            "logit as iNNvestigate, \"one_hot\": as captum, \"softmax\": one-hot x probability).")
    return init


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
    head_init : str
        Relevance initialization applied by :meth:`head` (``"one_hot"``: none): a gradient backward through
        ``head`` then starts from ``init_scale x d(score)/d(logits)`` (see :meth:`scaled`).
    """

    policy: str
    indices: torch.Tensor | None = None
    fn: Callable[[torch.Tensor], torch.Tensor] | None = None
    head_init: str = "one_hot"

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
        """What the forward handed to captum returns: logits for index targets, scores otherwise.

        Multiplied by the detached :meth:`init_scale` for ``head_init`` (a constant per sample, so the
        gradient of the output is ``init_scale x`` the one-hot gradient).
        """
        out = self.score(logits) if self.folded else logits
        if self.head_init == "one_hot":
            return out
        scale = self.init_scale(logits.detach(), self.head_init)
        return out * (scale if self.folded else scale[:, None])

    def scaled(self, init: str) -> "TargetSpec":
        """This target with :meth:`head` scaled for relevance initialization ``init``."""
        return TargetSpec(self.policy, self.indices, self.fn, check_relevance_init(init))

    def init_scale(self, logits: torch.Tensor, init: str) -> torch.Tensor:
        """Per-sample factor of the initial relevance: the score (``"logit"``), 1 or the target's probability."""
        check_relevance_init(init)
        if init == "one_hot":
            return torch.ones(logits.shape[0], dtype=logits.dtype, device=logits.device)
        if init == "logit":
            return self.score(logits.detach())
        if self.fn is not None:
            raise ExplanationError(
                'relevance_init="softmax" needs a class target ("pred", "label", an index); a callable target has '
                'no class probability. Use relevance_init="logit" or "one_hot".')
        idx = self.indices if self.indices is not None else logits.argmax(1)
        return torch.softmax(logits.detach(), 1).gather(1, idx.to(logits.device).view(-1, 1)).squeeze(1)

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

    def relevance(self, logits: torch.Tensor, init: str = "logit") -> torch.Tensor:
        """Initial LRP relevance at the output: d(score)/d(logits) times :meth:`init_scale` (default one-hot x logit).

        Mask and box targets (:mod:`.seg_targets`, :mod:`.detection`) bring their own ``"logit"`` relevance: the
        masked (weighted) outputs, which sum to the score; ``"one_hot"`` is then the mask (the score's gradient).
        """
        check_relevance_init(init)
        if hasattr(self.fn, "relevance"):
            if init == "logit":
                return self.fn.relevance(logits)
            if init == "one_hot":
                return self.one_hot_grad(logits)
        return self.one_hot_grad(logits) * self.init_scale(logits, init)[:, None]

    def subset(self, sl: slice) -> "TargetSpec":
        idx = None if self.indices is None else self.indices[sl]
        fn = self.fn.subset(sl) if hasattr(self.fn, "subset") else self.fn  # per-image mask/box targets
        return TargetSpec(self.policy, idx, fn, self.head_init)


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
