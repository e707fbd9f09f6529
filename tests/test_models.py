"""xaikit.models: the registry, 1-channel stems, pretrained weights from the local cache only, layer helpers."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from xaikit.errors import ArgumentError, ModelError, XaikitError
from xaikit.models import (
    ARCHITECTURES,
    VOLUME_ARCHITECTURES,
    SmallCNN,
    _adapt_conv,
    _densenet_legacy_keys,
    build_model,
    cam_layer,
    classifier_layer,
    freeze_backbone,
    pretrained_weights_path,
    unfreeze,
)

EXPECTED = {"small_cnn", "resnet18", "resnet50", "densenet121", "efficientnet_b0", "vgg11_bn"}


def test_registry_holds_the_documented_architectures():
    assert EXPECTED <= set(ARCHITECTURES)


# 3D models: tests/test_volumes.py; unet (segmentation): tests/test_unet.py
@pytest.mark.parametrize("arch", sorted(set(ARCHITECTURES) - set(VOLUME_ARCHITECTURES) - {"unet"}))
def test_every_architecture_takes_grey_images_and_returns_logits(arch):
    torch.manual_seed(0)
    model = build_model(arch, num_classes=3, in_channels=1).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 64, 64))
    assert out.shape == (2, 3)
    assert model.xaikit_arch == arch and model.xaikit_arch_kwargs["num_classes"] == 3
    assert model.get_submodule(classifier_layer(model)).out_features == 3
    seen = []
    handle = model.get_submodule(cam_layer(model, input_size=(64, 64))).register_forward_hook(
        lambda _m, _i, out: seen.append(out.shape))
    model(torch.randn(1, 1, 64, 64))
    handle.remove()
    assert len(seen[-1]) == 4 and seen[-1][-1] > 1 and seen[-1][-2] > 1  # a spatial feature map for CAMs
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 1


def test_small_cnn_is_small_and_fast_enough_for_the_sample_model():
    model = build_model("small_cnn", num_classes=2)
    n_params = sum(p.numel() for p in model.parameters())
    assert 50_000 < n_params < 300_000  # < 1.2 MB of float32 weights
    assert not any(isinstance(m, nn.ReLU) and m.inplace for m in model.modules())  # captum-friendly
    assert model(torch.randn(1, 1, 128, 128)).shape == (1, 2)
    assert isinstance(model, SmallCNN)


def test_cam_layer_is_the_outermost_last_spatial_module_and_restores_mode():
    model = build_model("efficientnet_b0", num_classes=2)
    model.train()
    model.features[0].eval()
    modes = [m.training for m in model.modules()]
    assert cam_layer(model, input_size=(64, 64)) == "features"  # not a squeeze-excitation conv on pooled 1x1 maps
    assert [m.training for m in model.modules()] == modes
    assert all(not m._forward_hooks for m in model.modules())
    assert cam_layer(build_model("resnet18", num_classes=2), torch.randn(2, 1, 64, 64)) == "layer4"  # residual sum in
    assert cam_layer(build_model("vgg11_bn", num_classes=2), input_size=(64, 64)) == "features"  # not avgpool
    with pytest.raises(ModelError, match="no layer with a spatial output at input size"):
        cam_layer(nn.Sequential(nn.Conv2d(1, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()), input_size=(1, 1))


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_cam_layer_equals_the_saliency_engines_rule(arch):
    """One rule for the CAM layer on every model: the saliency engine's default is models.cam_layer."""
    from xaikit.saliency.engine import cam_layer

    model = build_model(arch, num_classes=2)
    conv = next(m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d)))
    x = torch.randn(1, conv.in_channels, *((16, 16, 16) if isinstance(conv, nn.Conv3d) else (32, 32)))
    assert cam_layer(model, x) == cam_layer(model, x)


@pytest.mark.parametrize("arch,size", [("small_cnn", (32, 32)), ("resnet18", (64, 64)), ("small_cnn3d", (16, 16, 16))])
def test_cam_layer_is_the_layer_gradcam_uses(arch, size):
    from xaikit.saliency import explain

    model = build_model(arch, num_classes=2)
    x = torch.randn(1, 1, *size)
    assert explain(model, x, "gradcam").params["layer"] == cam_layer(model, x)


def test_cam_layer_keeps_the_model_in_eval_mode():
    small = build_model("small_cnn", num_classes=2).eval()
    assert cam_layer(small) == "features"
    assert not small.training


def test_freeze_backbone_leaves_only_the_head_trainable_and_unfreeze_undoes_it():
    model = build_model("resnet18", num_classes=2)
    freeze_backbone(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}
    unfreeze(model)
    assert all(p.requires_grad for p in model.parameters())


def test_unknown_architecture_lists_the_known_ones():
    with pytest.raises(ModelError, match="unknown architecture 'resnet9000'. Known architectures: .*small_cnn"):
        build_model("resnet9000", num_classes=2)


@pytest.mark.parametrize("k", [1, 0, -3])
def test_fewer_than_two_classes_is_refused(k):
    with pytest.raises(ArgumentError, match="at least 2 classes"):
        build_model("small_cnn", num_classes=k)


def test_unknown_keyword_is_a_model_error():
    with pytest.raises(ModelError, match="cannot build 'small_cnn'"):
        build_model("small_cnn", num_classes=2, depth=7)


def test_pretrained_small_cnn_does_not_exist():
    with pytest.raises(ModelError, match="no pretrained weights"):
        build_model("small_cnn", num_classes=2, pretrained=True)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return tmp_path / "hub" / "checkpoints"


def test_pretrained_weights_missing_from_cache_name_the_file_and_never_download(hub):
    with pytest.raises(ModelError) as info:
        build_model("resnet18", num_classes=2, pretrained=True)
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message and str(hub) in message and "never downloads" in message
    assert not hub.exists() or not any(hub.iterdir())
    with pytest.raises(ModelError, match="not a weights name"):
        build_model("resnet18", num_classes=2, pretrained="IMAGENET9K")


def test_pretrained_weights_from_cache_sum_the_rgb_stem(hub):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).state_dict()
    hub.mkdir(parents=True)
    path = pretrained_weights_path("resnet18")
    assert path.parent == hub
    torch.save(reference, path)
    model = build_model("resnet18", num_classes=2, in_channels=1, pretrained=True)
    torch.testing.assert_close(model.conv1.weight, reference["conv1.weight"].sum(1, keepdim=True))
    torch.testing.assert_close(model.layer3[1].conv2.weight, reference["layer3.1.conv2.weight"])
    assert model.fc.out_features == 2
    rgb = build_model("resnet18", num_classes=5, in_channels=3, pretrained="IMAGENET1K_V1")
    torch.testing.assert_close(rgb.conv1.weight, reference["conv1.weight"])


def test_damaged_cached_weights_give_a_model_error(hub):
    hub.mkdir(parents=True)
    pretrained_weights_path("resnet18").write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match="Delete the file"):
        build_model("resnet18", num_classes=2, pretrained=True)


def test_adapt_conv_for_other_channel_counts_repeats_and_rescales():
    torch.manual_seed(0)
    rgb = nn.Conv2d(3, 4, 3, bias=False)
    torch.testing.assert_close(_adapt_conv(rgb, 2, keep_weights=True).weight, rgb.weight[:, :2] * 1.5)
    six = _adapt_conv(rgb, 6, keep_weights=True)  # two full copies at half weight: same response to flat input
    torch.testing.assert_close(six(torch.ones(1, 6, 5, 5)), rgb(torch.ones(1, 3, 5, 5)))
    one = _adapt_conv(rgb, 1, keep_weights=True)  # grey = R = G = B: summed filters give the same response
    torch.testing.assert_close(one(torch.ones(1, 1, 5, 5)), rgb(torch.ones(1, 3, 5, 5)))
    assert _adapt_conv(rgb, 1).weight.shape == (4, 1, 3, 3)


def test_densenet_legacy_keys_are_renamed_like_torchvision():
    state = {"features.denseblock1.denselayer1.norm.1.weight": 1, "features.conv0.weight": 2}
    assert _densenet_legacy_keys(state) == {"features.denseblock1.denselayer1.norm1.weight": 1,
                                            "features.conv0.weight": 2}


def test_errors_are_xaikit_errors():
    assert issubclass(ModelError, XaikitError) and issubclass(ArgumentError, XaikitError)
