"""Model safety: everything :func:`explain` does to a model is scoped and undone.

* :func:`guarded` puts the model in eval mode with frozen weights for the duration of a call and restores
  every module's mode, every parameter's ``requires_grad`` and removes any hook added meanwhile, in
  ``finally`` (also when the method raises).
* :func:`private_copy` builds a private copy of the model in which every ReLU *use* gets its own fresh,
  non-in-place ``nn.ReLU`` module. captum's DeepLift and modified-ReLU methods (guided backprop,
  deconvnet) hook ReLU modules and break on torchvision models, which reuse one in-place ReLU several times
  per block and call ``F.relu(..., inplace=True)`` (DenseNet). We rewrite the graph with ``torch.fx``
  (symbolic tracing, then module surgery on the traced graph); untraceable models fall back to a deep copy
  with ``inplace=False`` (reuse then remains and captum may still complain; the error says so).
"""
from __future__ import annotations

import contextlib
import copy
import warnings
import weakref
import zlib
from typing import Iterator, MutableMapping

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError

__all__ = ["guarded", "private_copy", "state_fingerprint", "content_fingerprint", "clear_caches", "register_cache",
           "HOOK_DICTS", "hook_count"]

HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_pre_hooks_with_kwargs",
    "_forward_hooks_always_called",
)
_RELU_FUNCTIONS = (F.relu, torch.relu, torch.relu_, getattr(F, "relu_", F.relu))


def hook_count(model: nn.Module) -> int:
    """Total number of module hooks registered anywhere in ``model``."""
    return sum(len(getattr(m, d, {})) for m in model.modules() for d in HOOK_DICTS)


@contextlib.contextmanager
def guarded(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and frozen weights inside the block; modes, ``requires_grad`` and hooks restored after."""
    modes = [(m, m.training) for m in model.modules()]
    grads = [(p, p.requires_grad) for p in model.parameters()]
    hooks = [(m, d, set(getattr(m, d).keys())) for m in model.modules() for d in HOOK_DICTS if hasattr(m, d)]
    try:
        model.eval()
        for p, _ in grads:
            p.requires_grad_(False)
        yield model
    finally:
        for m, d, keys in hooks:
            table = getattr(m, d)
            for key in [k for k in table if k not in keys]:
                del table[key]
        for m, mode in modes:
            m.training = mode
        for p, flag in grads:
            p.requires_grad_(flag)


def state_fingerprint(model: nn.Module) -> tuple:
    """Cheap identity of a model's current weights: tensor ids, in-place version counters and storage addresses.

    Changes whenever a parameter or buffer is replaced, modified in place (an optimizer step) or given new data
    (``p.data = ...``, which leaves the version counter alone), so caches keyed by it never serve results for
    stale weights.
    """
    return tuple((id(t), t._version, t.data_ptr() if t.layout == torch.strided else 0)
                 for t in list(model.parameters()) + list(model.buffers()))


def content_fingerprint(model: nn.Module) -> tuple:
    """:func:`state_fingerprint` plus a checksum of every weight's and buffer's *values*.

    Edits through ``.data`` (``p.data.mul_(2)``, ``p.data[0] = 1``) move neither the version counter nor the storage
    address, so a cache keyed on :func:`state_fingerprint` alone would serve a private copy holding the old weights.
    CRC-32 of the bytes on the CPU (about a third of a forward pass's memory traffic; a change detector, not a
    security check), sums on other devices.
    """
    return state_fingerprint(model), tuple(_checksum(t) for t in list(model.parameters()) + list(model.buffers()))


def _checksum(t: torch.Tensor) -> int | tuple[float, float]:
    t = t.detach()
    if t.layout != torch.strided or t.device.type == "meta":
        return 0
    if t.device.type != "cpu":
        flat = t.reshape(-1).double()
        weights = torch.arange(1, flat.numel() + 1, device=flat.device, dtype=flat.dtype) % 97  # position matters
        return float(flat.sum()), float((flat * weights).sum())
    raw = t.contiguous().reshape(-1).view(torch.uint8).numpy() if t.numel() else b""
    return zlib.crc32(raw)


#: Every per-model cache of the saliency layer (private copies, canonized copies, probe results), for clear_caches.
_CACHES: list[MutableMapping] = []


def register_cache(cache: MutableMapping) -> MutableMapping:
    """Add a per-model cache to those :func:`clear_caches` empties; returns it."""
    _CACHES.append(cache)
    return cache


def clear_caches() -> None:
    """Drop every private model copy and cached check the saliency methods keep.

    The caches are keyed on the model's weights (:func:`content_fingerprint`) and freed with the model, so this is
    never needed for correctness; call it to release memory at once (a private copy is a second model) or after
    changing a model in a way no fingerprint can see (e.g. swapping a module's ``forward``).

    Examples
    --------
    >>> from xaikit.saliency import clear_caches
    >>> clear_caches()
    """
    for cache in _CACHES:
        cache.clear()


_COPIES: "weakref.WeakKeyDictionary[nn.Module, dict]" = register_cache(weakref.WeakKeyDictionary())


def private_copy(model: nn.Module, layer: str | None = None) -> tuple[nn.Module, nn.Module | None]:
    """A private, frozen, eval-mode copy of ``model`` with one fresh non-in-place ReLU per use.

    Parameters
    ----------
    model : torch.nn.Module
        The user's model (never modified).
    layer : str, optional
        Dotted name of a layer whose output must stay observable in the copy; a container such as
        ``"layer4"`` (inlined by tracing) gets an ``nn.Identity`` marker right after its last operation.

    Returns
    -------
    copy : torch.nn.Module
    layer_module : torch.nn.Module or None
        The module in the copy whose output is the output of ``layer``.
    """
    key = (content_fingerprint(model), layer)
    cached = _COPIES.get(model)
    if cached is not None and cached["key"] == key:
        return cached["copy"], cached["layer"]
    dup = copy.deepcopy(model).eval()
    for p in dup.parameters():
        p.requires_grad_(False)
    try:
        gm = fx.symbolic_trace(dup)
    except Exception as exc:  # fx raises TraceError, TypeError, NotImplementedError...: all mean "untraceable"
        warnings.warn(
            f"{type(model).__name__} cannot be traced by torch.fx ({type(exc).__name__}: {exc}); using a copy with "
            "non-in-place ReLUs only. captum may still reject reused activation modules.",
            stacklevel=3,
        )
        return _fallback_copy(dup, layer, model, key)
    marker = _mark_layer(gm, layer) if layer else None
    _fresh_relus(gm)
    gm.graph.lint()
    gm.recompile()
    gm.eval()
    layer_module = gm.get_submodule(marker) if marker else None
    _COPIES[model] = {"key": key, "copy": gm, "layer": layer_module}
    return gm, layer_module


def _fallback_copy(dup: nn.Module, layer: str | None, model: nn.Module, key: tuple):
    for m in dup.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    layer_module = dup.get_submodule(layer) if layer else None
    _COPIES[model] = {"key": key, "copy": dup, "layer": layer_module}
    return dup, layer_module


def _mark_layer(gm: fx.GraphModule, layer: str) -> str:
    """Insert an ``nn.Identity`` after the last graph node produced inside ``layer``; return its name."""
    last = None
    for node in gm.graph.nodes:
        stack = node.meta.get("nn_module_stack") or {}
        paths = {v[0] if isinstance(v, tuple) else k for k, v in stack.items()}
        if (node.op == "call_module" and node.target == layer) or layer in paths:
            last = node
    if last is None:
        raise ModelError(f"layer {layer!r} is not used in the traced forward pass of the model.")
    name = "xaikit_layer_output"
    gm.add_submodule(name, nn.Identity())
    with gm.graph.inserting_after(last):
        mark = gm.graph.call_module(name, args=(last,))
    last.replace_all_uses_with(mark, delete_user_cb=lambda user: user is not mark)
    return name


def _is_relu(node: fx.Node, gm: fx.GraphModule) -> bool:
    if node.op == "call_module":
        return isinstance(gm.get_submodule(node.target), nn.ReLU)
    if node.op == "call_function":
        return node.target in _RELU_FUNCTIONS
    return node.op == "call_method" and node.target in ("relu", "relu_")


def _fresh_relus(gm: fx.GraphModule) -> int:
    """Replace every ReLU use (module, function or method, in-place or not) by its own ``nn.ReLU()``."""
    count = 0
    for node in list(gm.graph.nodes):
        if not _is_relu(node, gm):
            continue
        name = f"xaikit_relu_{count}"
        count += 1
        gm.add_submodule(name, nn.ReLU(inplace=False))
        with gm.graph.inserting_after(node):
            new = gm.graph.call_module(name, args=(node.args[0],))
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
    gm.delete_all_unused_submodules()
    return count
