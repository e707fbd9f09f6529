"""Memory planning: how many samples one forward+backward may hold so peak memory stays in budget.

The activation memory of one sample is measured with one probe forward at batch size 1 under
``torch.autograd.graph.saved_tensors_hooks``: the tensors autograd keeps for the backward pass are exactly
what a batched forward+backward holds per sample (weights, which are shared, are excluded). A safety factor
covers the transient output and gradient buffers. The probe is cached per model state and input shape.

Methods then chunk their work by :attr:`MemoryPlan.chunk` samples per pass (captum's
``internal_batch_size`` for integrated gradients, ``perturbations_per_eval`` for occlusion/ablation,
our own loop over noise draws for the SmoothGrad family).

The chunk is chosen for speed, never above the memory bound ``max_batch``: on a CPU a pass over more samples is
not faster per sample once its activations outgrow the caches and the allocator's reuse (glibc maps a tensor of
more than 32 MiB fresh from the kernel and page-faults it in on every pass). Measured per sample (CPU time, one
thread, forward + input backward, on a shared 2-core Xeon with 4 MiB L2 per core) against the samples per pass:
the 98 K-parameter phantom CNN at 128 px (largest activation 1 MiB a sample) is fastest at 8 samples and takes
1.04x at 12, 1.10x at 16, 1.23x at 24, 1.34x at 32 and 1.73x at 128 (its 2 GiB memory bound is 256); at 64 px
(0.25 MiB) fastest at 32-64, 1.22x at 128 and 1.31x at 256; ResNet-18 at 64 px (0.25 MiB) fastest at 64 (1.06x
at 32, 1.03x at 128, 1.54x at 8), at 112 px (0.77 MiB) at 24-32 (1.04x at 16, 1.06x at 64, 1.13x at 8), at
224 px (3 MiB) at 8-16 (1.05x at 32, 1.23x at 2, 1.47x at 1). The total saved bytes do not predict this
(ResNet-18 is fastest with 4-16x the phantom CNN's), the largest single activation does, within about 5 %: the
best chunks keep it at 8-25 MiB. Hence :data:`CPU_TENSOR_BYTES` for the largest activation of a pass, but at least
:data:`CPU_MIN_CHUNK` samples. CUDA devices take the memory bound: larger batches only fill them better.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import MemoryBudgetError
from .safety import state_fingerprint

__all__ = ["MemoryPlan", "default_budget", "probe", "plan", "speed_chunk", "CPU_TENSOR_BYTES", "CPU_MIN_CHUNK"]

CPU_BUDGET = 2 * 1024**3
#: Bytes of a pass's largest activation above which a CPU pass gets slower per sample (measured: module doc).
CPU_TENSOR_BYTES = 12 * 2**20
#: Samples a CPU pass may hold regardless of the byte cap (within the memory bound).
CPU_MIN_CHUNK = 8
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
    chunk : int
        Samples per forward+backward chosen for speed (:func:`speed_chunk`), ``1 <= chunk <= max_batch``;
        ``0`` when constructed means ``max_batch``.
    """

    budget: int
    per_sample: int
    max_batch: int
    n_classes: int
    output_ndim: int = 2
    chunk: int = 0

    def __post_init__(self):
        object.__setattr__(self, "chunk", min(self.max_batch, self.chunk) if self.chunk > 0 else self.max_batch)

    def copies(self, n: int) -> int:
        """Copies of an ``n``-sample input (noise draws, path steps, perturbations) one pass takes: >= 1."""
        return max(1, self.chunk // max(1, n))


def default_budget(device: torch.device) -> int:
    """About 2 GiB on CPU; half of the currently free memory on a CUDA device."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * GPU_FRACTION)
    return CPU_BUDGET


def probe(model: nn.Module, sample: torch.Tensor) -> tuple[int, int, int, int]:
    """(bytes saved for backward by one sample, number of output channels, output ndim, bytes of the largest saved
    tensor), from one forward.

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
              out.ndim, max(seen.values(), default=x.nelement() * x.element_size()))
    cache[key] = result
    return result


def plan(model: nn.Module, inputs: torch.Tensor, budget: int | None, method: str) -> MemoryPlan:
    """Work out :class:`MemoryPlan` for ``inputs``; raise :class:`MemoryBudgetError` if one sample is too big."""
    budget = default_budget(inputs.device) if budget is None else int(budget)
    saved, n_classes, ndim, largest = probe(model, inputs[:1])
    per_sample = int(saved * SAFETY)
    if per_sample > budget:
        raise MemoryBudgetError(
            f"memory_budget={budget / 2**20:.1f} MiB is too small for {method!r}: one sample of shape "
            f"{tuple(inputs.shape[1:])} needs about {per_sample / 2**20:.1f} MiB for a forward+backward pass. "
            "Raise memory_budget, or use smaller images."
        )
    max_batch = max(1, budget // per_sample)
    return MemoryPlan(budget, per_sample, max_batch, n_classes, ndim, speed_chunk(largest, max_batch, inputs.device))


def speed_chunk(largest: int, max_batch: int, device: torch.device) -> int:
    """Samples per pass for speed: on CPU ``CPU_TENSOR_BYTES // largest`` but at least ``CPU_MIN_CHUNK``, on
    CUDA the memory bound; never more than ``max_batch`` (nor less than 1).

    Parameters
    ----------
    largest : int
        Bytes of one sample's largest activation saved for the backward (:func:`probe`).
    max_batch : int
        Samples that fit the memory budget.
    device : torch.device
        Where the passes run.

    Returns
    -------
    int
    """
    if device.type != "cpu":
        return max(1, int(max_batch))
    return max(1, min(int(max_batch), max(CPU_MIN_CHUNK, CPU_TENSOR_BYTES // max(1, int(largest)))))
