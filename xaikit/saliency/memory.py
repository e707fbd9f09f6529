"""Memory planning: how many samples one forward+backward may hold so peak memory stays in budget.

The activation memory of one sample is measured with one probe forward at batch size 1 under
``torch.autograd.graph.saved_tensors_hooks``: the tensors autograd keeps for the backward pass are exactly
what a batched forward+backward holds per sample (weights, which are shared, are excluded). A safety factor
covers the transient output and gradient buffers. The probe is cached per model state and input shape.

Methods then chunk their work by :attr:`MemoryPlan.max_batch` samples per pass (captum's
``internal_batch_size`` for integrated gradients, ``perturbations_per_eval`` for occlusion/ablation,
our own loop over noise draws for the SmoothGrad family).
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import MemoryBudgetError
from .safety import state_fingerprint

__all__ = ["MemoryPlan", "default_budget", "probe", "plan"]

CPU_BUDGET = 2 * 1024**3
GPU_FRACTION = 0.5
SAFETY = 1.5
_PROBES: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class MemoryPlan:
    """How a call may use memory.

    Attributes
    ----------
    budget : int
        Bytes allowed for activations and gradients (weights not counted).
    per_sample : int
        Estimated bytes for one sample's forward+backward.
    max_batch : int
        Samples per forward+backward that fit the budget (>= 1).
    n_classes : int
        Number of model outputs seen by the probe (channels ``K`` of ``N x K x ...`` outputs).
    output_ndim : int
        Dimensions of the model output (2 for classifiers, 4 for 2D segmentation models).
    """

    budget: int
    per_sample: int
    max_batch: int
    n_classes: int
    output_ndim: int = 2


def default_budget(device: torch.device) -> int:
    """About 2 GiB on CPU; half of the currently free memory on a CUDA device."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * GPU_FRACTION)
    return CPU_BUDGET


def probe(model: nn.Module, sample: torch.Tensor) -> tuple[int, int, int]:
    """(bytes saved for backward by one sample, number of output channels, output ndim), from one forward.

    ``sample`` is a ``1 x C x H x W`` tensor; the model must already be in eval mode with frozen weights.
    """
    key = (state_fingerprint(model), tuple(sample.shape), sample.dtype, str(sample.device))
    cache = _PROBES.setdefault(model, {})
    if key in cache:
        return cache[key]
    shared = {p.untyped_storage().data_ptr() for p in list(model.parameters()) + list(model.buffers())}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in shared:
            seen[ptr] = max(seen.get(ptr, 0), t.untyped_storage().nbytes())
        return t

    x = sample.detach().clone().requires_grad_(True)
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    result = (int(sum(seen.values())) + 2 * x.nelement() * x.element_size(), int(out.shape[1]) if out.ndim > 1 else 1,
              out.ndim)
    cache[key] = result
    return result


def plan(model: nn.Module, inputs: torch.Tensor, budget: int | None, method: str) -> MemoryPlan:
    """Work out :class:`MemoryPlan` for ``inputs``; raise :class:`MemoryBudgetError` if one sample is too big."""
    budget = default_budget(inputs.device) if budget is None else int(budget)
    saved, n_classes, ndim = probe(model, inputs[:1])
    per_sample = int(saved * SAFETY)
    if per_sample > budget:
        raise MemoryBudgetError(
            f"memory_budget={budget / 2**20:.1f} MiB is too small for {method!r}: one sample of shape "
            f"{tuple(inputs.shape[1:])} needs about {per_sample / 2**20:.1f} MiB for a forward+backward pass. "
            "Raise memory_budget, or use smaller images."
        )
    return MemoryPlan(budget, per_sample, max(1, budget // per_sample), n_classes, ndim)
