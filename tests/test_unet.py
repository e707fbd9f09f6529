"""The zoo's UNet: shapes, checkpoint round trip, and what the saliency engine needs (fx-traceable, BN foldable)."""
from __future__ import annotations

import warnings

import torch
from torch import nn

from xaikit.checkpoint import load_checkpoint, save_checkpoint
from xaikit.models import build_model
from xaikit.saliency import private_copy
from xaikit.saliency.canonizers import canonizers_for


def test_unet_shapes_and_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    net = build_model("unet", num_classes=3, widths=(4, 8, 16)).eval()
    x = torch.rand(2, 1, 32, 48)
    out = net(x)
    assert out.shape == (2, 3, 32, 48)
    assert not any(isinstance(m, nn.ReLU) and m.inplace for m in net.modules())
    path = save_checkpoint(tmp_path / "unet.pt", net, classes=["bg", "lung", "heart"], preprocess={"size": 32})
    ckpt = load_checkpoint(path)
    assert ckpt.arch == "unet" and ckpt.classes == ["bg", "lung", "heart"]
    with torch.no_grad():
        torch.testing.assert_close(ckpt.model(x), net(x))


def test_unet_is_traceable_and_its_batchnorms_fold():
    net = build_model("unet", num_classes=2, widths=(4, 8)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # private_copy warns when it cannot trace
        dup, _ = private_copy(net)
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(dup(x), net(x))
    assert [type(c).__name__ for c in canonizers_for(net)] == ["ExactSequentialMergeBatchNorm"]
    bias_free = build_model("unet", num_classes=2, widths=(4, 8), bias=False, batch_norm=False)
    assert all(getattr(m, "bias", None) is None
               for m in bias_free.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))
