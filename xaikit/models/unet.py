"""A small 2D UNet for the model zoo (``build_model("unet", num_classes=3)``): logits ``N x K x H x W``.

Ronneberger et al. 2015, "U-Net: convolutional networks for biomedical image segmentation", with few channels
so that it trains on the phantom in a minute on a CPU. Each convolution is directly followed by its BatchNorm
inside an ``nn.Sequential`` (zennit's ``SequentialMergeBatchNorm`` folds them for LRP), ReLUs are not in-place
(captum's hooks), skips are concatenations and upsampling is a transposed convolution, all of which LRP rules
and gradient methods handle. ``bias=False, batch_norm=False`` gives a bias-free net (LRP conservation tests).

Example
-------
>>> import torch
>>> from xaikit.models import build_model
>>> net = build_model("unet", num_classes=3, widths=(4, 8)).eval()
>>> tuple(net(torch.rand(1, 1, 32, 32)).shape)
(1, 3, 32, 32)
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ModelError

__all__ = ["UNet", "build_unet"]


class UNet(nn.Module):
    """Encoder of ``len(widths)`` levels (two 3x3 convs each, max-pool between), mirrored decoder, 1x1 head.

    Parameters
    ----------
    num_classes : int
        Output channels (background included).
    in_channels : int
        Input channels (1 for grey images).
    widths : sequence of int
        Channels per level; the input size must be divisible by ``2 ** (len(widths) - 1)``.
    batch_norm, bias : bool
        BatchNorm after each 3x3 conv; biases in the convolutions.
    """

    def __init__(self, num_classes: int, in_channels: int = 1, widths=(8, 16, 32), batch_norm: bool = True,
                 bias: bool = True):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) < 2:
            raise ModelError(f"UNet needs at least two levels (widths); got widths={widths}.")
        chans = (in_channels, *widths)
        self.encoders = nn.ModuleList(_double_conv(a, b, batch_norm, bias) for a, b in zip(chans[:-1], chans[1:]))
        self.pool = nn.MaxPool2d(2)
        rev = widths[::-1]
        self.ups = nn.ModuleList(nn.ConvTranspose2d(a, b, 2, stride=2, bias=bias) for a, b in zip(rev[:-1], rev[1:]))
        self.decoders = nn.ModuleList(_double_conv(2 * b, b, batch_norm, bias) for b in rev[1:])
        self.head = nn.Conv2d(widths[0], num_classes, 1, bias=bias)
        self.factor = 2 ** (len(widths) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []  # no size check here: shape-dependent branches would stop torch.fx tracing (private_copy)
        for i, encoder in enumerate(self.encoders):
            x = encoder(x if i == 0 else self.pool(x))
            skips.append(x)
        for up, decoder, skip in zip(self.ups, self.decoders, skips[-2::-1]):
            x = decoder(torch.cat([skip, up(x)], 1))
        return self.head(x)


def _double_conv(c_in: int, c_out: int, batch_norm: bool, bias: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a in (c_in, c_out):
        layers.append(nn.Conv2d(a, c_out, 3, padding=1, bias=bias))
        layers += [nn.BatchNorm2d(c_out)] if batch_norm else []
        layers.append(nn.ReLU(inplace=False))
    return nn.Sequential(*layers)


def build_unet(num_classes: int, in_channels: int, pretrained: bool | str, widths=(8, 16, 32), batch_norm: bool = True,
               bias: bool = True) -> nn.Module:
    """The ``"unet"`` architecture's builder (registered by :mod:`xaikit.models`)."""
    if pretrained:
        raise ModelError("unet has no pretrained weights; use pretrained=False (it trains fast from scratch)")
    return UNet(num_classes, in_channels, widths=tuple(widths), batch_norm=bool(batch_norm), bias=bool(bias))
