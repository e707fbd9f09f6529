"""Control 'explanations' that sanity checks compare real methods against (Adebayo et al. 2018)."""
from __future__ import annotations

import numpy as np
import torch

from .registry import register

__all__: list[str] = []


@register("random", family="control", library="xaikit", cost=0, supports_3d=True)
def random(ctx):
    """Seeded standard-normal noise, independent of the model (per-image stream: same map whatever the batching)."""
    return torch.stack([torch.randn(ctx.inputs.shape[1:], generator=ctx.generator(int(i)), device=ctx.inputs.device)
                        for i in ctx.index])


@register("sobel", family="control", library="xaikit", cost=0, signed=False, supports_3d=True)
def sobel(ctx):
    """Sobel edge magnitude of each input channel (scikit-image), independent of the model."""
    from skimage.filters import sobel as sobel_filter

    edges = [np.stack([sobel_filter(c) for c in img]) for img in ctx.inputs.detach().cpu().double().numpy()]
    return torch.from_numpy(np.stack(edges)).to(ctx.inputs.device)
