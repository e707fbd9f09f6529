"""Canonizers chosen by architecture, applied in a scope and checked to keep the model's outputs.

* torchvision ResNet: zennit's ``ResNetCanonizer`` parts (BatchNorm merged into the preceding conv, residual
  sum as a module so LRP rules apply to it), with an exact merge (:class:`ExactMerge`).
* torchvision VGG and other plain sequential models: zennit's ``SequentialMergeBatchNorm`` (what its
  ``VGGCanonizer`` is), with the exact merge.
* torchvision 3D ResNet (``r3d_18``): :class:`VideoResNetCanonizer` (BatchNorm3d merged exactly, residual sums
  as zennit ``Sum`` modules; zennit has no canonizer for the video ResNets).
* torchvision DenseNet: :class:`DenseNetCanonizer` (zennit has none). A dense layer is
  ``norm1 -> relu1 -> conv1 -> norm2 -> relu2 -> conv2`` on the concatenation of all earlier features, so
  only the BatchNorms that *follow* a linear layer can be merged: ``features.norm0`` into ``features.conv0``
  and every ``norm2`` into its layer's ``conv1``. The pre-activation BatchNorms (every ``norm1``, every
  transition ``norm`` and the final ``features.norm5``) act on concatenated features produced by several
  earlier convolutions and are followed by a ReLU, so no linear layer can absorb them exactly; they stay and
  get zennit's ``Pass`` rule (relevance passes through unchanged). They are listed as unmerged in the
  report. The canonizer also replaces DenseNet's functional in-place final ReLU by a ReLU module and
  disables memory-efficient checkpointing for the duration (both needed for hooks to see every layer).

Every canonizer is checked once per model state and input shape: on a float64 copy of the model (so float32
rounding of the merged weights cannot hide or fake a mismatch) the canonized outputs must equal the
original ones within 1e-5 x max(1, |logits|). A canonizer that fails the check is not used (warning).
"""
from __future__ import annotations

import contextlib
import copy
import warnings
import weakref
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.densenet import DenseNet, _DenseLayer
from torchvision.models.resnet import ResNet
from torchvision.models.vgg import VGG
from torchvision.models.video.resnet import BasicBlock as VideoBasicBlock
from torchvision.models.video.resnet import VideoResNet
from zennit.canonizers import (
    AttributeCanonizer,
    Canonizer,
    CompositeCanonizer,
    MergeBatchNorm,
    SequentialMergeBatchNorm,
)
from zennit.core import RemovableHandleList, collect_leaves
from zennit.layer import Sum
from zennit.torchvision import ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer
from zennit.types import BatchNorm

from .safety import content_fingerprint, register_cache

__all__ = ["DenseNetCanonizer", "VideoResNetCanonizer", "ExactResNetCanonizer", "ExactSequentialMergeBatchNorm",
           "canonizers_for", "canonized", "canonized_copy", "TOLERANCE"]

TOLERANCE = 1e-5


class ExactMerge:
    """Mixin fixing zennit's merge: zennit resets the merged BatchNorm to running_var = 1, which still divides
    by sqrt(1 + eps) (a 5e-6 relative error per merged layer, 6e-6 on a ResNet-18's logits). Setting
    running_var = 1 - eps makes the leftover BatchNorm an exact identity."""

    @staticmethod
    def merge_batch_norm(modules, batch_norm) -> None:
        MergeBatchNorm.merge_batch_norm(modules, batch_norm)
        batch_norm.running_var.data = torch.full_like(batch_norm.running_var.data, 1.0 - batch_norm.eps)


def mergeable(batch_norm: nn.Module) -> bool:
    """A BatchNorm with running statistics and affine parameters: the merge needs all four (one built with
    ``track_running_stats=False`` or ``affine=False`` made zennit's merge raise AttributeError/TypeError)."""
    return all(getattr(batch_norm, k, None) is not None for k in ("running_mean", "running_var", "weight", "bias"))


class ExactSequentialMergeBatchNorm(ExactMerge, SequentialMergeBatchNorm):
    """zennit's SequentialMergeBatchNorm with an exact identity left behind (see :class:`ExactMerge`); BatchNorms
    that cannot be merged (:func:`mergeable`) are left alone and reported unmerged."""

    def apply(self, root_module: nn.Module) -> list:
        instances, last = [], None
        for leaf in collect_leaves(root_module):  # zennit's loop, with the mergeable() condition
            if isinstance(last, self.linear_type) and isinstance(leaf, self.batch_norm_type) and mergeable(leaf):
                instance = self.copy()
                instance.register((last,), leaf)
                instances.append(instance)
            last = leaf
        return instances


class ExactResNetCanonizer(CompositeCanonizer):
    """zennit's ResNetCanonizer with :class:`ExactSequentialMergeBatchNorm`."""

    def __init__(self) -> None:
        super().__init__((ExactSequentialMergeBatchNorm(), ResNetBottleneckCanonizer(), ResNetBasicBlockCanonizer()))


class DenseNetMergeBatchNorm(ExactMerge, MergeBatchNorm):
    """Merge the BatchNorms of a torchvision DenseNet that directly follow a convolution."""

    def apply(self, root_module: nn.Module) -> list:
        instances = []
        for module in root_module.modules():
            pairs = []
            if isinstance(module, DenseNet) and hasattr(module.features, "norm0"):
                pairs.append((module.features.conv0, module.features.norm0))
            if isinstance(module, _DenseLayer):
                pairs.append((module.conv1, module.norm2))
            for linear, norm in [(lin, bn) for lin, bn in pairs if mergeable(bn)]:
                instance = self.copy()
                instance.register((linear,), norm)
                instances.append(instance)
        return instances


class DenseNetForwardCanonizer(AttributeCanonizer):
    """Module ReLU instead of ``F.relu(inplace=True)`` in ``DenseNet.forward``; no checkpointing in dense layers."""

    def __init__(self) -> None:
        super().__init__(self._attribute_map)

    @classmethod
    def _attribute_map(cls, name: str, module: nn.Module):
        if isinstance(module, DenseNet):
            return {"forward": cls._densenet_forward.__get__(module), "canonizer_relu": nn.ReLU()}
        if isinstance(module, _DenseLayer):
            return {"forward": cls._dense_layer_forward.__get__(module)}
        return None

    def copy(self) -> "DenseNetForwardCanonizer":
        return DenseNetForwardCanonizer()

    @staticmethod
    def _densenet_forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.canonizer_relu(self.features(x))
        out = torch.flatten(F.adaptive_avg_pool2d(out, (1, 1)), 1)
        return self.classifier(out)

    @staticmethod
    def _dense_layer_forward(self, inputs) -> torch.Tensor:
        prev = [inputs] if isinstance(inputs, torch.Tensor) else inputs
        bottleneck = self.conv1(self.relu1(self.norm1(torch.cat(prev, 1))))
        new = self.conv2(self.relu2(self.norm2(bottleneck)))
        if self.drop_rate > 0:
            new = F.dropout(new, p=self.drop_rate, training=self.training)
        return new


class VideoResNetBlockCanonizer(AttributeCanonizer):
    """The residual sum of torchvision's 3D ResNet blocks (``r3d_18``: ``torchvision.models.video.resnet.BasicBlock``,
    whose ``conv1``/``conv2`` are ``Sequential(conv, BatchNorm3d[, ReLU])``) as a zennit ``Sum`` module, exactly as
    zennit's ``ResNetBasicBlockCanonizer`` does for the 2D blocks; without it relevance is not split at the sum
    and doubles per block."""

    def __init__(self) -> None:
        super().__init__(self._attribute_map)

    @classmethod
    def _attribute_map(cls, name: str, module: nn.Module):
        if isinstance(module, VideoBasicBlock):
            return {"forward": cls._forward.__get__(module), "canonizer_sum": Sum()}
        return None

    def copy(self) -> "VideoResNetBlockCanonizer":
        return VideoResNetBlockCanonizer()

    @staticmethod
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.canonizer_sum(torch.stack([identity, self.conv2(self.conv1(x))], dim=-1))
        return self.relu(out)


class VideoResNetCanonizer(CompositeCanonizer):
    """Canonizer for torchvision's 3D ResNets: BatchNorm3d merged into the preceding Conv3d, residual sums as
    modules."""

    def __init__(self) -> None:
        super().__init__((ExactSequentialMergeBatchNorm(), VideoResNetBlockCanonizer()))


class DenseNetCanonizer(CompositeCanonizer):
    """Canonizer for torchvision DenseNets (see the module docstring for what is and is not merged)."""

    def __init__(self) -> None:
        super().__init__((DenseNetMergeBatchNorm(), DenseNetForwardCanonizer()))


def canonizers_for(model: nn.Module) -> list[Canonizer]:
    """Canonizers for the architecture of ``model`` (empty when it has nothing to canonize)."""
    kinds = {type(m) for m in model.modules()}
    if any(issubclass(k, DenseNet) for k in kinds):
        return [DenseNetCanonizer()]
    if any(issubclass(k, ResNet) for k in kinds):
        return [ExactResNetCanonizer()]
    if any(issubclass(k, VideoResNet) for k in kinds):
        return [VideoResNetCanonizer()]
    if any(issubclass(k, VGG) for k in kinds) or any(isinstance(m, BatchNorm) for m in model.modules()):
        return [ExactSequentialMergeBatchNorm()]  # zennit's VGGCanonizer is exactly this merge
    return []


_VERIFIED: "weakref.WeakKeyDictionary[nn.Module, dict]" = register_cache(weakref.WeakKeyDictionary())


@contextlib.contextmanager
def canonized(model: nn.Module, inputs: torch.Tensor) -> Iterator[dict]:
    """Apply the architecture's canonizers inside the block and undo them in ``finally``.

    Yields a report ``{"canonizers", "merged_batchnorm", "unmerged_batchnorm", "max_abs_output_diff"}``.
    The output check runs on ``inputs[:1]`` once per model state and input shape.
    """
    names = {id(m): n for n, m in model.named_modules()}
    batchnorms = [n for n, m in model.named_modules() if isinstance(m, BatchNorm)]
    key = (content_fingerprint(model), tuple(inputs.shape[1:]))
    cans = canonizers_for(model)
    cached = _VERIFIED.get(model)
    if cached is None or cached["key"] != key:
        cached = {"key": key, "diff": _check64(model, inputs[:1], cans) if cans else 0.0}
        _VERIFIED[model] = cached
    diff = cached["diff"]
    handles = RemovableHandleList()
    try:
        if diff is not None:
            for canonizer in cans:
                handles += canonizer.apply(model)
        merged = sorted({names.get(id(h.batch_norm), "?") for h in handles if isinstance(h, MergeBatchNorm)})
        report = {
            "canonizers": [type(c).__name__ for c in cans] if diff is not None else [],
            "merged_batchnorm": merged,
            "unmerged_batchnorm": [n for n in batchnorms if n not in merged],
            "max_abs_output_diff": 0.0 if diff is None else diff,
        }
        _warn_unmerged(report, len(batchnorms))
        yield report
    finally:
        handles.remove()


_COPIES: "weakref.WeakKeyDictionary[nn.Module, dict]" = register_cache(weakref.WeakKeyDictionary())


def canonized_copy(model: nn.Module, inputs: torch.Tensor) -> tuple[nn.Module, dict]:
    """A private, frozen, eval-mode copy of ``model`` with its architecture's canonizers applied for good.

    Built once per model state and input shape (cached; the copy holds nothing of ``model``), so LRP pays
    neither the BatchNorm merge nor its undoing per call and ``model`` itself is never touched. Returns
    ``(copy, report)``, the report as :func:`canonized` yields it; ``(model, report)`` when there is nothing to
    canonize and no in-place activation. In-place activations of the copy are made out-of-place (a reused
    ``ReLU(inplace=True)`` overwrote views zennit's hooks keep); when the canonizers fail the float64 output check,
    the copy is used without them.
    """
    key = (content_fingerprint(model), tuple(inputs.shape[1:]), inputs.dtype, str(inputs.device))
    cached = _COPIES.get(model)
    if cached is not None and cached["key"] == key:
        _warn_unmerged(cached["report"], cached["n_batchnorm"])
        return (model if cached["copy"] is None else cached["copy"]), cached["report"]
    if not canonizers_for(model) and not _in_place(model):
        with canonized(model, inputs) as report:
            return model, report
    dup = copy.deepcopy(model).eval()
    for p in dup.parameters():
        p.requires_grad_(False)
    for m in _in_place(dup):
        m.inplace = False  # zennit's hooks see views that a (reused) in-place activation would overwrite
    with canonized(dup, inputs) as report:  # the float64 check and the report, on the copy
        pass
    if report["canonizers"]:
        for canonizer in canonizers_for(dup):
            canonizer.apply(dup)  # for good: the copy is private and never restored
        _drop_merged(dup, report["merged_batchnorm"])
    # else: no canonizers, or they changed the outputs (warned): LRP runs on the copy as it is
    for m in dup.modules():
        m.xaikit_private = True  # weights nobody changes: direct rules may cache their clamped parts
    n_batchnorm = sum(isinstance(m, BatchNorm) for m in model.modules())
    _COPIES[model] = {"key": key, "copy": dup, "report": report, "n_batchnorm": n_batchnorm}
    return dup, report


def _in_place(model: nn.Module) -> list[nn.Module]:
    """Modules that overwrite their input (``nn.ReLU(inplace=True)`` and other activations with ``inplace``)."""
    return [m for m in model.modules() if getattr(m, "inplace", False) is True]


def _drop_merged(model: nn.Module, names: list[str]) -> None:
    """Replace merged BatchNorms (exact identities after :class:`ExactMerge`) by ``nn.Identity`` in a private copy:
    no BatchNorm forward, backward and zennit ``Pass`` hook per call for a layer that does nothing."""
    for name in names:
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, nn.Identity())


def _check64(model: nn.Module, sample: torch.Tensor, cans: list[Canonizer]) -> float | None:
    """Max abs output difference caused by ``cans`` on a float64 copy; None (and a warning) if above tolerance."""
    dup = copy.deepcopy(model).double().eval()
    x = sample.detach().double()
    with torch.no_grad():
        reference = dup(x)
        handles = RemovableHandleList()
        try:
            for canonizer in [type(c)() for c in cans]:
                handles += canonizer.apply(dup)
            diff = float((dup(x) - reference).abs().max())
        finally:
            handles.remove()
    if diff > TOLERANCE * max(1.0, float(reference.abs().max())):
        warnings.warn(
            f"canonizing {type(model).__name__} with {[type(c).__name__ for c in cans]} changed its outputs (max "
            f"abs difference {diff:.3g} in float64); LRP runs on the model without canonizers.", stacklevel=5)
        return None
    return diff


def _warn_unmerged(report: dict, n_batchnorm: int) -> None:
    left = report["unmerged_batchnorm"]
    if not left:
        return
    what = ("no BatchNorm was merged" if len(left) == n_batchnorm
            else f"{len(left)} of {n_batchnorm} BatchNorms are not merged")
    warnings.warn(
        f"{what} into a linear layer ({', '.join(left[:3])}{', ...' if len(left) > 3 else ''}); LRP passes "
        "relevance through them unchanged (zennit Pass rule), so relevance conservation is approximate there.",
        stacklevel=4)
