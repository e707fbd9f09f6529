"""Model zoo: a small teaching CNN and torchvision classifiers, all accepting grey (1-channel) images.

Every architecture lives in :data:`ARCHITECTURES`, filled by :func:`register_architecture`, and is built through
:func:`build_model`, which records how it was built (``model.xaikit_arch``, ``model.xaikit_arch_kwargs``) so a
checkpoint can rebuild it. Pretrained torchvision weights are used only when they are already in the local torch
hub cache: nothing is ever downloaded, and a missing file is an error, never silently random weights.

Example
-------
>>> from xaikit.models import build_model, cam_layer
>>> model = build_model("small_cnn", num_classes=2)
>>> cam_layer(model)
'features'
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .._modes import eval_mode
from .._registry import Registry
from ..errors import ArgumentError, ModelError
from .unet import UNet, build_unet

__all__ = [
    "ARCHITECTURES",
    "register_architecture",
    "build_model",
    "SmallCNN",
    "SmallCNN3D",
    "UNet",
    "VOLUME_ARCHITECTURES",
    "is_volume_model",
    "freeze_backbone",
    "unfreeze",
    "cam_layer",
    "classifier_layer",
    "pretrained_weights_path",
]

#: name -> builder ``(num_classes, in_channels, pretrained, **kw) -> nn.Module``
ARCHITECTURES: Registry[Callable[..., nn.Module]] = Registry("architecture", error=ModelError)


def register_architecture(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding a model builder to :data:`ARCHITECTURES` under ``name``."""
    return ARCHITECTURES.register(name)


def build_model(
    arch: str, num_classes: int, in_channels: int = 1, pretrained: bool | str = False, **kw
) -> nn.Module:
    """Build a classifier returning logits ``N x num_classes``.

    Parameters
    ----------
    arch : str
        A key of :data:`ARCHITECTURES` (``small_cnn``, ``resnet18``, ``resnet50``, ``densenet121``,
        ``efficientnet_b0``, ``vgg11_bn``).
    num_classes : int
        Number of output classes, at least 2 (binary tasks use two logits and softmax).
    in_channels : int
        Input channels; 1 for grey images. With pretrained RGB weights the stem filters are summed over
        colour (one channel) or repeated and rescaled (other counts).
    pretrained : bool or str
        ``True`` for torchvision's default ImageNet weights, or the name of a weights enum member
        (e.g. ``"IMAGENET1K_V1"``). The file must already be in the torch hub cache.
    **kw
        Extra arguments of the builder (e.g. ``widths`` or ``dropout`` for ``small_cnn``).

    Returns
    -------
    torch.nn.Module
        In training mode, on the CPU, with ``xaikit_arch`` and ``xaikit_arch_kwargs`` attributes.
    """
    builder = ARCHITECTURES.lookup(arch)
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ArgumentError(
            f"num_classes={num_classes!r}: a classifier needs at least 2 classes (use 2 logits for a binary task)"
        )
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ArgumentError(f"in_channels={in_channels!r}: must be a positive integer (1 for grey images)")
    try:
        model = builder(num_classes=num_classes, in_channels=in_channels, pretrained=pretrained, **kw)
    except TypeError as exc:  # an unknown keyword for this architecture
        raise ModelError(f"cannot build {arch!r} with arguments {sorted(kw)}: {exc}") from exc
    model.xaikit_arch = arch
    model.xaikit_arch_kwargs = {"num_classes": num_classes, "in_channels": in_channels, **kw}
    return model


# --------------------------------------------------------------------------------------------- small CNN


class SmallCNN(nn.Module):
    """A small CNN for teaching: conv-BN-ReLU-maxpool blocks, global average pooling, one linear layer.

    With the default widths ``(16, 32, 64, 128)`` it has about 98 K parameters (a ~0.4 MB checkpoint) and trains
    on a few hundred 128-224 px images in minutes on a laptop CPU. ReLUs are not in-place (friendlier to captum's
    hooks), and each convolution is directly followed by its batch norm inside an ``nn.Sequential`` so zennit's
    ``SequentialMergeBatchNorm`` canonizer can fold them.
    """

    def __init__(self, num_classes: int, in_channels: int = 1, widths=(16, 32, 64, 128), dropout: float = 0.0):
        super().__init__()
        chans = [in_channels, *widths]
        self.features = nn.Sequential(*(_conv_block(a, b) for a, b in zip(chans[:-1], chans[1:])))
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(chans[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.pool(self.features(x))))


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=False),
        nn.MaxPool2d(2),
    )


@register_architecture("small_cnn")
def _small_cnn(num_classes: int, in_channels: int, pretrained: bool | str, widths=(16, 32, 64, 128),
               dropout: float = 0.0) -> nn.Module:
    if pretrained:
        raise ModelError("small_cnn has no pretrained weights; use pretrained=False (it trains fast from scratch)")
    return SmallCNN(num_classes, in_channels, widths=tuple(widths), dropout=float(dropout))


# ----------------------------------------------------------------------------------------- torchvision


def _register_torchvision(name: str) -> None:
    @register_architecture(name)
    def builder(num_classes: int, in_channels: int, pretrained: bool | str, **kw) -> nn.Module:
        return _torchvision_model(name, num_classes, in_channels, pretrained, **kw)

    builder.__doc__ = f"torchvision ``{name}`` with an ``in_channels`` stem and a ``num_classes`` head."


def _torchvision_model(name: str, num_classes: int, in_channels: int, pretrained: bool | str, **kw) -> nn.Module:
    import torchvision

    if not pretrained:
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kw)
        if in_channels != 3:
            stem = _first_conv(model)
            _replace_module(model, stem, _adapt_conv(_get(model, stem), in_channels))
        return model
    model = torchvision.models.get_model(name, weights=None, **kw)
    model.load_state_dict(_load_cached_weights(name, pretrained))
    if in_channels != 3:
        stem = _first_conv(model)
        _replace_module(model, stem, _adapt_conv(_get(model, stem), in_channels, keep_weights=True))
    head_name = classifier_layer(model)
    head = _get(model, head_name)
    _replace_module(model, head_name, nn.Linear(head.in_features, num_classes, bias=head.bias is not None))
    return model


for _name in ("resnet18", "resnet50", "densenet121", "efficientnet_b0", "vgg11_bn"):
    _register_torchvision(_name)


def _weights_enum(name: str, pretrained: bool | str):
    import torchvision

    enum = torchvision.models.get_model_weights(name)
    if pretrained is True:
        return enum.DEFAULT
    try:
        return enum[str(pretrained)]
    except KeyError:
        raise ModelError(
            f"pretrained={pretrained!r} is not a weights name of {name}; known: {', '.join(enum.__members__)}"
        ) from None


def pretrained_weights_path(name: str, pretrained: bool | str = True) -> Path:
    """Where torchvision keeps the weights file of ``name`` (``<torch.hub.get_dir()>/checkpoints/<file>``)."""
    weights = _weights_enum(name, pretrained)
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def _load_cached_weights(name: str, pretrained: bool | str) -> dict[str, torch.Tensor]:
    path = pretrained_weights_path(name, pretrained)
    url = _weights_enum(name, pretrained).url
    if not path.is_file():
        raise ModelError(
            f"pretrained weights for {name} are not in the local cache: expected the file {path.name} in "
            f"{path.parent}. xaikit never downloads at run time. On a machine with internet, download {url} "
            f"(or run torchvision.models.get_model({name!r}, weights='DEFAULT') once) and copy the file there "
            f"(set TORCH_HOME to use another cache folder), or use pretrained=False."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged file; re-raise as one clear error
        raise ModelError(f"cannot read cached weights {path}: {exc}. Delete the file and copy it again.") from exc
    if name.startswith("densenet"):
        state = _densenet_legacy_keys(state)
    return state


def _densenet_legacy_keys(state: dict) -> dict:
    # The published DenseNet files use old key names ("norm.1"); torchvision renames them in a private helper
    # (torchvision.models.densenet._load_state_dict). Same regex, applied here because that helper downloads.
    import re

    pattern = re.compile(
        r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
    )
    out = {}
    for key, value in state.items():
        m = pattern.match(key)
        out[m.group(1) + m.group(2) if m else key] = value
    return out


def _adapt_conv(conv: nn.Conv2d, in_channels: int, keep_weights: bool = False) -> nn.Conv2d:
    """A copy of ``conv`` taking ``in_channels`` inputs.

    With ``keep_weights`` the RGB filters are summed over colour for one channel, else repeated cyclically and
    rescaled by ``3 / in_channels`` so activations keep their scale (the rule of timm's ``adapt_input_conv``,
    written here because timm is not a dependency).
    """
    new = nn.Conv2d(
        in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
        conv.groups, conv.bias is not None, conv.padding_mode,
    )
    if keep_weights:
        w = conv.weight.detach()
        if in_channels == 1:
            w = w.sum(dim=1, keepdim=True)
        else:
            reps = math.ceil(in_channels / w.shape[1])
            w = w.repeat(1, reps, 1, 1)[:, :in_channels] * (w.shape[1] / in_channels)
        with torch.no_grad():
            new.weight.copy_(w)
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
    return new


# ------------------------------------------------------------------------------------- layer helpers


def _get(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name)


def _replace_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _first_conv(model: nn.Module) -> str:
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name
    raise ModelError(f"{type(model).__name__} has no Conv2d layer to adapt to the input channels")


def classifier_layer(model: nn.Module) -> str:
    """Dotted name of the classifier head (the last ``nn.Linear`` in module order)."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise ModelError(f"{type(model).__name__} has no nn.Linear layer; cannot tell which layer is the head")
    return names[-1]


def cam_layer(model: nn.Module, sample: torch.Tensor | None = None, *,
              input_size: tuple[int, ...] = (128, 128)) -> str:
    """Dotted name of the CAM target layer: the last module (in execution order) whose output still has a
    spatial extent > 1 — the one rule of the kit (``explain(..., "gradcam")`` picks this layer by default).

    Among modules finishing at the same point the outermost wins (``layer4`` rather than its last conv or ReLU),
    so the CAM sees the block output including batch norm and the residual sum, as pytorch-grad-cam recommends
    for ResNets (``model.layer4[-1]``). Adaptive pooling layers are skipped (they only resample: VGG's 7x7
    ``avgpool`` would otherwise be chosen), and so are outputs pooled to 1 x 1 (EfficientNet's
    squeeze-and-excitation convolutions).

    Parameters
    ----------
    model : torch.nn.Module
    sample : torch.Tensor, optional
        One input batch (its first image is used). Default: zeros of ``input_size`` with the channels of the
        model's first convolution.
    input_size : tuple of int
        Spatial size of the default sample (``(H, W)``, or ``(D, H, W)`` for 3D models).

    Found with one forward pass in eval mode without gradients; every module's mode is restored and every
    hook removed afterwards.

    Examples
    --------
    >>> cam_layer(build_model("small_cnn", num_classes=2))
    'features'
    """
    sample = _default_sample(model, input_size) if sample is None else sample[:1]
    finished: list[tuple[str, torch.Size]] = []

    def record(name: str) -> Callable:
        def hook(_module, _inputs, output):
            if isinstance(output, torch.Tensor):
                finished.append((name, output.shape))
        return hook

    skip = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool3d)  # resample only
    handles = [m.register_forward_hook(record(name)) for name, m in model.named_modules()
               if name and not isinstance(m, skip)]
    try:
        with eval_mode(model), torch.no_grad():
            model(sample)
    finally:
        for h in handles:
            h.remove()
    spatial = [name for name, shape in finished if len(shape) >= 4 and math.prod(shape[2:]) > 1]
    if not spatial:
        raise ModelError(f"{type(model).__name__} has no layer with a spatial output at input size "
                         f"{tuple(sample.shape[2:])}; pass a larger sample, or layer=... explicitly.")
    return spatial[-1]


def _default_sample(model: nn.Module, input_size: tuple[int, ...]) -> torch.Tensor:
    conv = next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))), None)
    if conv is None:
        raise ModelError(f"{type(model).__name__} has no convolution; pass a sample to find its CAM layer.")
    param = next(model.parameters())
    return torch.zeros(1, conv.in_channels, *input_size, device=param.device, dtype=param.dtype)


def freeze_backbone(model: nn.Module, head: str | None = None) -> nn.Module:
    """Stop gradients for every parameter except the classifier head's (``head`` defaults to
    :func:`classifier_layer`). Returns ``model``; undo with :func:`unfreeze`."""
    head = head or classifier_layer(model)
    prefix = head + "."
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(prefix))
    return model


def unfreeze(model: nn.Module) -> nn.Module:
    """Let every parameter of ``model`` receive gradients again. Returns ``model``."""
    for param in model.parameters():
        param.requires_grad_(True)
    return model


# ---------------------------------------------------------------------------------------------- 3D models

#: Architectures for ``N x C x D x H x W`` volumes (the others take ``N x C x H x W`` images).
VOLUME_ARCHITECTURES = ("small_cnn3d", "r3d_18")


class SmallCNN3D(nn.Module):
    """The 3D sibling of :class:`SmallCNN` for ``N x C x D x H x W`` volumes: conv-BN-ReLU-maxpool blocks with
    3 x 3 x 3 kernels, global average pooling, one linear layer.

    With the default widths ``(8, 16, 32)`` it has about 19 K parameters (a ~0.1 MB checkpoint) and trains on a
    few hundred 32^3 volumes in a minute or two on 2 CPU cores. Each Conv3d is directly followed by its
    BatchNorm3d inside an ``nn.Sequential`` (zennit's ``SequentialMergeBatchNorm`` folds them for LRP).
    """

    def __init__(self, num_classes: int, in_channels: int = 1, widths=(8, 16, 32), dropout: float = 0.0):
        super().__init__()
        chans = [in_channels, *widths]
        self.features = nn.Sequential(*(_conv_block3d(a, b) for a, b in zip(chans[:-1], chans[1:])))
        self.pool = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Flatten())
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(chans[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.pool(self.features(x))))


def _conv_block3d(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm3d(c_out),
        nn.ReLU(inplace=False),
        nn.MaxPool3d(2),
    )


@register_architecture("small_cnn3d")
def _small_cnn3d(num_classes: int, in_channels: int, pretrained: bool | str, widths=(8, 16, 32),
                 dropout: float = 0.0) -> nn.Module:
    if pretrained:
        raise ModelError("small_cnn3d has no pretrained weights; use pretrained=False (it trains fast from scratch)")
    return SmallCNN3D(num_classes, in_channels, widths=tuple(widths), dropout=float(dropout))


@register_architecture("r3d_18")
def _r3d_18(num_classes: int, in_channels: int, pretrained: bool | str) -> nn.Module:
    """torchvision's 3D ResNet-18 (``r3d_18``, Tran et al. 2018) with an ``in_channels`` stem, random weights.

    The Kinetics-400 weights are video weights (RGB frames over time), not CT/MRI; they are not offered.
    """
    import torchvision

    if pretrained:
        raise ModelError("r3d_18 is offered with random weights only (its torchvision weights are Kinetics-400 "
                         "video weights, not medical volumes); use pretrained=False")
    model = torchvision.models.video.r3d_18(weights=None, num_classes=num_classes)
    stem = model.stem[0]
    model.stem[0] = nn.Conv3d(in_channels, stem.out_channels, stem.kernel_size, stem.stride, stem.padding,
                              bias=stem.bias is not None)
    for module in model.modules():  # fresh ReLUs that are not in-place (captum's hooks and LRP want that)
        for name, child in module.named_children():
            if isinstance(child, nn.ReLU):
                setattr(module, name, nn.ReLU(inplace=False))
    return model


def is_volume_model(model: nn.Module) -> bool | None:
    """True when ``model`` convolves volumes (Conv3d), False for images (Conv2d), None when it has neither."""
    kinds = {type(m) for m in model.modules()}
    if any(issubclass(k, nn.Conv3d) for k in kinds):
        return True
    if any(issubclass(k, nn.Conv2d) for k in kinds):
        return False
    return None


register_architecture("unet")(build_unet)
