"""What a layer holds: the activation maps of a chosen layer, per filter (the brain-tumour seed's "activations").

:func:`layer_activations` runs the model once with captum's ``LayerActivation`` on the layer (default: the CAM
layer) and returns a :class:`LayerActivations` holding every filter's map per image; :mod:`xaikit.viz.layers`
draws pages of filters and :class:`xaikit.widgets.layers.LayerViewer` pages through them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from captum.attr import LayerActivation
from torch import nn

from ..errors import ExplanationError
from ..models import cam_layer
from .engine import resolve_layer
from .safety import guarded

__all__ = ["LayerActivations", "layer_activations"]


@dataclass(frozen=True)
class LayerActivations:
    """Activations ``N x C x h x w`` (``N x C x d x h x w`` for volumes) of one layer, float32 on the CPU.

    Attributes
    ----------
    acts : torch.Tensor
    layer : str
        Dotted name of the layer.
    image_ids : list of str
    input_size : tuple of int
        Spatial size of the inputs (for :meth:`upsampled`).
    """

    acts: torch.Tensor
    layer: str
    image_ids: list
    input_size: tuple

    @property
    def n_filters(self) -> int:
        return int(self.acts.shape[1])

    def strongest(self, image: int, k: int | None = None) -> list[int]:
        """Filters of ``image`` ordered by mean activation, strongest first (the first ``k``)."""
        order = self.acts[image].flatten(1).mean(1).argsort(descending=True).tolist()
        return order[:k] if k is not None else order

    def mean_map(self) -> torch.Tensor:
        """Channel mean ``N x h x w``: where the layer is active at all."""
        return self.acts.mean(1)

    def upsampled(self, maps: torch.Tensor) -> torch.Tensor:
        """Maps ``N x h x w`` resized to the input (bi/trilinear, corners not aligned, as the CAM methods)."""
        mode = "bilinear" if len(self.input_size) == 2 else "trilinear"
        return F.interpolate(maps[:, None].float(), size=self.input_size, mode=mode, align_corners=False)[:, 0]


def layer_activations(model: nn.Module, inputs: torch.Tensor, layer: str | None = None,
                      image_ids: Sequence[str] | None = None) -> LayerActivations:
    """Activations of ``layer`` (default: the last spatial layer, as the CAM methods use) for ``inputs``.

    Parameters
    ----------
    model : torch.nn.Module
        Left as it was (mode, hooks).
    inputs : torch.Tensor
        ``N x C x H x W`` or ``N x C x D x H x W``.
    layer : str, optional
        Dotted module name, e.g. ``"layer4"``; its output must keep the spatial axes.
    image_ids : sequence of str, optional

    Examples
    --------
    >>> import torch, torchvision
    >>> from xaikit.saliency import layer_activations
    >>> net = torchvision.models.resnet18(num_classes=2).eval()
    >>> view = layer_activations(net, torch.rand(1, 3, 64, 64), "layer3")
    >>> tuple(view.acts.shape)
    (1, 256, 4, 4)
    """
    if not isinstance(inputs, torch.Tensor) or inputs.ndim not in (4, 5):
        raise ExplanationError(f"layer_activations: inputs must be a tensor N x C x H x W or N x C x D x H x W; got "
                               f"{getattr(inputs, 'shape', type(inputs).__name__)}.")
    name = layer if layer is not None else cam_layer(model, inputs[:1])
    module = resolve_layer(model, name)
    with guarded(model), torch.no_grad():
        acts = LayerActivation(model, module).attribute(inputs)
    if not isinstance(acts, torch.Tensor) or acts.ndim != inputs.ndim:
        raise ExplanationError(f"layer_activations: layer {name!r} outputs shape "
                               f"{tuple(getattr(acts, 'shape', ()))}, without the spatial axes of the inputs; pick a "
                               f"convolutional layer, e.g. {cam_layer(model, inputs[:1])!r}.")
    ids = [str(i) for i in range(len(inputs))] if image_ids is None else [str(i) for i in image_ids]
    return LayerActivations(acts.detach().float().cpu(), name, ids, tuple(inputs.shape[2:]))
