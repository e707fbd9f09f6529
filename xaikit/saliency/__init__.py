"""Saliency maps through one call: ``explain(model, inputs, method, target)`` for 45+ methods.

Methods live in the :data:`METHODS` registry (captum gradients/paths/perturbations, the CAM family, zennit LRP
composites with canonizers, and controls). Every call leaves the model as it was, keeps memory under a
budget, and returns an :class:`Explanation` with signed maps at input resolution and full provenance.

Examples
--------
>>> import torch, torchvision
>>> from xaikit.saliency import explain, METHODS
>>> net = torchvision.models.resnet18(num_classes=2).eval()
>>> exp = explain(net, torch.rand(1, 3, 64, 64), "gradcam")
>>> exp.maps.shape
torch.Size([1, 64, 64])
"""
from __future__ import annotations

from ..models import cam_layer
from . import cam, captum_methods, contrastive, controls, fullgrad, layer_methods, lrp, sampling, targets  # noqa: F401 (registering)
from .batch import explain_many
from .canonizers import DenseNetCanonizer, canonized, canonizers_for
from .engine import MethodContext, explain
from .explanation import Explanation
from .layer_view import LayerActivations, layer_activations
from .patches import explain_patches
from .presets import PRESETS, innvestigate
from .registry import METHODS, MethodInfo, register
from .safety import clear_caches, guarded, private_copy

__all__ = [
    "explain",
    "explain_many",
    "explain_patches",
    "layer_activations",
    "LayerActivations",
    "targets",
    "Explanation",
    "METHODS",
    "MethodInfo",
    "MethodContext",
    "PRESETS",
    "innvestigate",
    "register",
    "cam_layer",
    "canonizers_for",
    "canonized",
    "DenseNetCanonizer",
    "guarded",
    "private_copy",
    "clear_caches",
]
