"""What every metric gets: the model, inputs, maps and targets, batched model calls, and shared caches.

A :class:`EvalContext` runs the model only through :meth:`EvalContext.outputs` (chunks of at most
``batch`` inputs, sized by the saliency engine's memory plan) and re-explains only through
:meth:`EvalContext.explain` (one :func:`xaikit.saliency.explain` call for all perturbed copies, which the
engine chunks by the same plan). Both count what they run, so the benchmark can compare a metric's cost with
its compute bound. ``shared`` is one dict for a whole :func:`score_many` call (clean outputs, fully
perturbed inputs, randomized model copies serve every method); ``cache`` belongs to one explanation
(a perturbation sweep serves every metric that reads it).
"""
from __future__ import annotations

import inspect
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from ..domain import domain_check_off
from ..errors import ArgumentError, EvaluationError, ModelError
from ..saliency import explain
from ..saliency.memory import plan
from ..saliency.registry import get_method

__all__ = ["EvalContext", "make_context", "OUTPUTS"]

#: What a perturbation metric reads from the model: the target's logit or its softmax probability.
OUTPUTS = ("logit", "prob")


@dataclass
class EvalContext:
    """Everything a metric function gets besides its own parameters.

    Attributes
    ----------
    model : torch.nn.Module
        The user's model (in eval mode with frozen weights while the metric runs; restored afterwards).
    inputs : torch.Tensor
        ``N x C x H x W``, detached.
    maps : torch.Tensor
        ``N x H x W`` signed maps (float64 copies: metrics never change the Explanation).
    targets : torch.Tensor
        long ``N``: the class each map explains.
    image_ids, labels, preds : per-image metadata for the table.
    method : str
        Saliency method name (``"unknown"`` for plain tensors): what :meth:`explain` recomputes.
    label : str
        Name of the maps in the table (``score_many``'s dict key; the method name by default).
    explain_kwargs : dict or None
        What :func:`xaikit.saliency.explain` needs to recompute the maps (``None`` for plain tensors).
    masks : numpy.ndarray or None
        Ground-truth masks ``N x H x W`` (bool).
    memory_budget : int or None
        Bytes for activations; :attr:`batch` (inputs per forward pass) comes from the engine's memory plan,
        probed on first use only (metrics that run no model never probe it).
    seed : int
        Seed of the metric's own random draws.
    shared, cache : dict
        Caches shared by all methods of a call, and by all metrics of this explanation.
    counts : collections.Counter
        ``forward_batches``, ``forward_inputs``, ``explain_inputs`` run so far.
    """

    model: nn.Module
    inputs: torch.Tensor
    maps: torch.Tensor
    targets: torch.Tensor
    image_ids: list
    labels: Any
    preds: Any
    method: str
    explain_kwargs: dict | None
    masks: np.ndarray | None
    memory_budget: int | None
    seed: int
    shared: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)
    label: str = ""

    def __post_init__(self) -> None:
        self.label = self.label or self.method

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def batch(self) -> int:
        """Inputs per forward pass: the saliency engine's memory plan for this model and input size."""

        key = ("batch", self.memory_budget, tuple(self.inputs.shape[1:]))
        if key not in self.shared:
            batch = plan(self.model, self.inputs, self.memory_budget, "evaluation").max_batch
            if self.inputs.device.type == "cpu":
                batch = min(batch, max(1, CPU_TENSOR_BYTES // _largest_activation(self.model, self.inputs[:1])))
            self.shared[key] = batch
        return self.shared[key]

    # ------------------------------------------------------------------ model outputs
    def outputs(self, chunks: Iterable[tuple[torch.Tensor, torch.Tensor]], output: str = "logit",
                model: nn.Module | None = None) -> torch.Tensor:
        """Target outputs (float64) for ``(x_chunk, image_index_chunk)`` pairs, in order.

        Each chunk is one forward pass; build chunks with :meth:`chunked` so none exceeds ``batch``.
        """
        model = self.model if model is None else model
        parts = []
        with torch.no_grad():
            for x, index in chunks:
                logits = model(x)
                self.counts["forward_batches"] += 1
                self.counts["forward_inputs"] += len(x)
                parts.append(_read(logits, self.targets[index], output))
        out = torch.cat(parts).cpu() if parts else torch.empty(0, dtype=torch.float64)  # one copy to the host
        bad = ~torch.isfinite(out)
        if bool(bad.any()):
            raise EvaluationError(
                f"the model returned non-finite outputs (NaN/inf) on {int(bad.sum())} perturbed inputs of "
                f"{self.label!r}; the perturbation (baseline, noise) drives the model out of range. Use a baseline "
                "inside the image intensity range or smaller noise.")
        return out

    def chunked(self, n_items: int, make: Any) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``make(positions)`` for consecutive position ranges of at most ``batch`` items."""
        for start in range(0, n_items, self.batch):
            yield make(torch.arange(start, min(n_items, start + self.batch)))

    def clean_outputs(self, output: str = "logit") -> torch.Tensor:
        """Target outputs on the unperturbed inputs (computed once per call, shared by every method)."""
        key = ("clean", output, _target_key(self.targets))
        if key not in self.shared:
            index = torch.arange(len(self))
            self.shared[key] = self.outputs(self.chunked(len(self), lambda p: (self.inputs[p], index[p])), output)
        return self.shared[key]

    # ------------------------------------------------------------------ explanations
    def explain(self, x: torch.Tensor, index: torch.Tensor, model: nn.Module | None = None) -> torch.Tensor:
        """Maps (float64 ``M x H x W``) of the same method for inputs ``x`` of images ``index``."""
        if self.explain_kwargs is None:
            raise ArgumentError(
                "explanation must be an xaikit Explanation (not a plain tensor of maps) for metrics that recompute "
                "maps (robustness, randomization): pass the result of xaikit.saliency.explain.")

        kw = dict(self.explain_kwargs)
        ids = [self.image_ids[int(i)] for i in index]  # same per-image random streams as the original maps
        with domain_check_off():  # x: the kit's perturbed copies (the user's inputs were checked on the way in)
            exp = explain(self.model if model is None else model, x, self.method, self.targets[index],
                          image_ids=ids, keep_raw=False, **kw)
        self.counts["explain_inputs"] += len(x)
        return exp.maps.double()


#: On CPU a forward chunk is cut so that no activation of it reaches 32 MiB: glibc's malloc serves larger blocks
#: with fresh mmap'd pages (its dynamic mmap threshold stops at 32 MiB), so every pass pays page faults and
#: zeroing. Measured on the 128 px phantom model, 1 thread: 4.2 ms per image in chunks of 8-31, 5.0-6.3 ms in
#: chunks of 32-60 (its first activation is 1 MiB per image). The memory plan alone allowed 256.
CPU_TENSOR_BYTES = 32 * 2**20 - 1


def _largest_activation(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the largest tensor any module outputs for one input (a probe forward with hooks, removed after)."""
    sizes = [1]

    def hook(_module, _args, out):
        if isinstance(out, torch.Tensor):
            sizes.append(out.numel() * out.element_size())

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return max(sizes)


def _read(logits: torch.Tensor, targets: torch.Tensor, output: str) -> torch.Tensor:
    logits = logits.double()
    if output == "prob":
        logits = torch.softmax(logits, 1)
    return logits.gather(1, targets.view(-1, 1).to(logits.device)).squeeze(1)


def _target_key(targets: torch.Tensor) -> tuple:
    return tuple(int(t) for t in targets)


# ---------------------------------------------------------------------------------------- building
def make_context(model: nn.Module, inputs: Any, explanation: Any, *, target: Any = None, masks: Any = None,
                 seed: int = 0, memory_budget: int | None = None, shared: dict | None = None,
                 label: str | None = None) -> EvalContext:
    """Check the arguments and build an :class:`EvalContext` (see :func:`xaikit.evaluation.score`)."""
    if not isinstance(model, nn.Module):
        raise ModelError(f"model must be a torch.nn.Module returning logits N x K; got {type(model).__name__}.")
    x = _check_inputs(inputs)
    maps, meta = _unpack_explanation(explanation, x)
    targets = _targets(model, x, target, meta, shared if shared is not None else {})
    return EvalContext(model=model, inputs=x, maps=maps, targets=targets, image_ids=meta["image_ids"],
                       labels=meta["labels"], preds=meta["preds"], method=meta["method"],
                       explain_kwargs=_explain_kwargs(meta["explanation"], memory_budget),
                       masks=_check_masks(masks, maps), memory_budget=memory_budget, seed=int(seed),
                       shared=shared if shared is not None else {}, label=label or "")


def _check_inputs(inputs: Any) -> torch.Tensor:
    if not isinstance(inputs, torch.Tensor) or inputs.ndim != 4 or not inputs.dtype.is_floating_point:
        shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise ArgumentError(f"inputs must be a float tensor N x C x H x W; got {shape}. Stack the images with "
                            "torch.stack([s['image'] for s in samples]).")
    if not bool(torch.isfinite(inputs).all()):
        raise ArgumentError("inputs contain NaN or inf values; clean the images before evaluating maps of them.")
    return inputs.detach()


def _unpack_explanation(explanation: Any, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
    meta: dict[str, Any] = {"explanation": None, "labels": None, "preds": None, "method": "unknown"}
    if hasattr(explanation, "maps") and hasattr(explanation, "method"):
        maps = explanation.maps
        meta.update(explanation=explanation, labels=explanation.labels, preds=explanation.preds,
                    method=explanation.method, targets=explanation.targets, image_ids=list(explanation.image_ids))
    elif isinstance(explanation, (torch.Tensor, np.ndarray)):
        maps = torch.as_tensor(explanation)
    else:
        raise ArgumentError(f"explanation must be an xaikit Explanation or a tensor N x H x W of maps; got "
                            f"{type(explanation).__name__}.")
    maps = maps.detach().double().cpu()
    if maps.shape != (x.shape[0], *x.shape[2:]):
        raise ArgumentError(f"explanation maps have shape {tuple(maps.shape)} but the inputs need "
                            f"{(x.shape[0], *x.shape[2:])} (one H x W map per input image, at input resolution).")
    if not bool(torch.isfinite(maps).all()):
        raise ArgumentError("explanation maps contain NaN or inf values; recompute them before scoring.")
    meta.setdefault("image_ids", [str(i) for i in range(len(x))])
    return maps, meta


def _targets(model: nn.Module, x: torch.Tensor, target: Any, meta: dict, shared: dict) -> torch.Tensor:
    if target is None:
        if meta.get("targets") is None:
            target = "pred"
        else:
            t = torch.as_tensor(meta["targets"]).long()
            if bool((t < 0).any()):
                raise ArgumentError("the explanation was computed for a callable target (targets = -1); pass "
                                    "target=... (class indices) to score it.")
            return t
    if isinstance(target, str) and target == "pred":
        if "pred" not in shared:
            with torch.no_grad():
                shared["pred"] = model(x).argmax(1).cpu()
        return shared["pred"]
    if isinstance(target, bool) or not isinstance(target, (int, torch.Tensor, np.ndarray, list, tuple)):
        raise ArgumentError(f'target must be "pred", a class index or one index per input; got {target!r}.')
    t = torch.as_tensor(target).long().reshape(-1)
    t = t.expand(len(x)).clone() if t.numel() == 1 else t
    if t.numel() != len(x):
        raise ArgumentError(f"target has {t.numel()} entries but there are {len(x)} inputs; give one per input.")
    return t


def _explain_kwargs(explanation: Any, memory_budget: int | None) -> dict | None:
    if explanation is None:
        return None

    info = get_method(explanation.method)
    accepted = [p for p in inspect.signature(info.fn).parameters if p != "ctx"]
    params = {k: v for k, v in explanation.params.items() if k in accepted}
    kw = {"seed": int(explanation.params.get("seed", 0)), "reduction": explanation.reduction
          if explanation.reduction != "none" else "sum", "memory_budget": memory_budget, **params}
    if info.needs_layer:
        kw["layer"] = explanation.params.get("layer")
    return kw


def _check_masks(masks: Any, maps: torch.Tensor) -> np.ndarray | None:
    if masks is None:
        return None
    m = masks.detach().cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    if m.ndim == 2:
        m = np.broadcast_to(m, maps.shape)
    if m.shape != tuple(maps.shape):
        raise ArgumentError(f"masks have shape {m.shape} but the maps are {tuple(maps.shape)}; give one H x W "
                            "ground-truth mask per image, on the maps' grid (resize it with the same Preprocess).")
    return m.astype(bool)
