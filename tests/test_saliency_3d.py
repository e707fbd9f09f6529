"""Saliency on volumes: every method that claims ``supports_3d`` runs on a tiny 3D net (finite maps, model
untouched), the others refuse 5-D input with a clear error; 3D-specific behaviour (occlusion cubes, CAM
upsampling, LRP with BatchNorm3d, 2-D model given a volume)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from xaikit.errors import ExplanationError, ModelError
from xaikit.saliency import METHODS, explain

from saliency_helpers import FAST_LAYER_SAMPLED, assert_unchanged, randomize_batchnorm, snapshot

FAST = {**FAST_LAYER_SAMPLED, "integrated_gradients": {"n_steps": 4},
        "smoothgrad": {"n_samples": 3}, "smoothgrad_sq": {"n_samples": 3},
        "vargrad": {"n_samples": 3}, "gradient_shap": {"n_samples": 3}, "lime": {"n_samples": 12, "n_segments": 8},
        "kernel_shap": {"n_samples": 12, "n_segments": 8}, "feature_ablation": {"n_segments": 8},
        "occlusion": {"window": 4, "stride": 4}}


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_cnn3d(bn: bool = True, seed: int = 0) -> nn.Module:
    """conv-BN-ReLU-maxpool-conv-BN-ReLU (features, 4^3) -> global average pool -> linear, 3 classes."""
    torch.manual_seed(seed)
    layers = [nn.Conv3d(1, 4, 3, padding=1, bias=False), nn.BatchNorm3d(4), nn.ReLU(), nn.MaxPool3d(2),
              nn.Conv3d(4, 6, 3, padding=1, bias=False), nn.BatchNorm3d(6), nn.ReLU()]
    if not bn:
        layers = [m for m in layers if not isinstance(m, nn.BatchNorm3d)]
    model = nn.Sequential()
    model.add_module("features", nn.Sequential(*layers))
    model.add_module("pool", nn.AdaptiveAvgPool3d(1))
    model.add_module("flatten", nn.Flatten())
    model.add_module("fc", nn.Linear(6, 3))
    return randomize_batchnorm(model).eval()


def volumes(n: int = 2) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", sorted(n for n, m in METHODS.items() if m.supports_3d))
def test_every_3d_method_on_a_tiny_3d_cnn(name):
    model, x = tiny_cnn3d(), volumes()
    before = snapshot(model)
    exp = explain(model, x, name, **FAST.get(name, {}))
    assert exp.maps.shape == (2, 8, 8, 8) and torch.isfinite(exp.maps).all()
    with torch.no_grad():
        assert torch.equal(exp.preds, model(x).argmax(1))
    if not METHODS[name].signed:
        assert exp.maps.min() >= -1e-6
    assert_unchanged(model, before)


def test_a_method_without_3d_refuses_volumes_and_names_the_3d_ones():
    from xaikit.saliency.registry import register

    @register("_only_2d_for_test", family="gradient", library="xaikit")
    def only_2d(ctx):
        return ctx.inputs

    try:
        with pytest.raises(ExplanationError, match=r"N x C x H x W.*does not run on volumes; 3D methods: .*gradcam"):
            explain(tiny_cnn3d(), volumes(), "_only_2d_for_test")
    finally:
        METHODS.pop("_only_2d_for_test")


def test_occlusion_uses_cubes():
    """One voxel that alone drives the score: occlusion with 2^3 cubes (stride 2) marks exactly its cube."""
    class OneVoxel(nn.Module):
        def forward(self, x):
            v = x[:, 0, 3, 4, 5]
            return torch.stack([v, -v], 1)

    x = torch.ones(1, 1, 8, 8, 8)
    exp = explain(OneVoxel(), x, "occlusion", target=0, window=2, stride=2)
    hot = torch.zeros(8, 8, 8)
    hot[2:4, 4:6, 4:6] = 1.0
    assert torch.equal(exp.maps[0], hot)


def test_cam_upsamples_trilinearly():
    model, x = tiny_cnn3d(), volumes(1)
    exp = explain(model, x, "gradcam", layer="features.6", keep_raw=True)
    assert exp.maps.shape == (1, 8, 8, 8)
    coarse = explain(model, torch.nn.functional.interpolate(x, size=4), "gradcam", layer="features.6")
    assert coarse.maps.shape == (1, 4, 4, 4)


def test_lrp_merges_batchnorm3d_and_conserves_relevance():
    """Bias-free 3D net with BatchNorm3d: after merging, LRP-epsilon puts the logit on the input (up to the
    merged BN shifts, which become biases: so compare with the same net where BN shifts are zero)."""
    model = tiny_cnn3d().double()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.zero_()
            m.bias.data.zero_()
    model.fc.bias.data.zero_()
    x = volumes(1).double()
    exp = explain(model, x, "lrp_epsilon", target=1, epsilon=1e-9)
    assert exp.params["canonization"]["merged_batchnorm"] == ["features.1", "features.5"]
    with torch.no_grad():
        logit = model(x)[0, 1]
    assert float(exp.maps.sum()) == pytest.approx(float(logit), rel=1e-5)


def test_2d_model_given_a_volume_and_3d_model_given_images():
    from xaikit.models import build_model

    with pytest.raises(ModelError, match=r"2-D model.*volume"):
        explain(build_model("small_cnn", num_classes=2).eval(), volumes(), "gradient")
    with pytest.raises(ModelError, match=r"3-D model.*N x C x D x H x W"):
        explain(tiny_cnn3d(), torch.rand(1, 1, 8, 8), "gradient")


def test_r3d_resnet_lrp_canonized_and_conserving():
    """torchvision's 3D ResNet (one block per stage here, same block classes as r3d_18): BatchNorm3d merged,
    residual sums canonized, relevance sums to the logit, model untouched."""
    from torchvision.models.video.resnet import BasicBlock, BasicStem, Conv3DSimple, VideoResNet

    torch.manual_seed(0)
    model = VideoResNet(BasicBlock, [Conv3DSimple] * 4, [1, 1, 1, 1], BasicStem, num_classes=2).double().eval()
    model.fc.bias.data.zero_()
    x = torch.rand(1, 3, 4, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    before = snapshot(model)
    exp = explain(model, x, "lrp_epsilon", target=1, epsilon=1e-9, stabilizer=1e-12)  # pooling stabilizer too
    report = exp.params["canonization"]
    assert report["canonizers"] == ["VideoResNetCanonizer"] and report["unmerged_batchnorm"] == []
    with torch.no_grad():
        logit = model(x)[0, 1]
    assert float(exp.maps.sum()) == pytest.approx(float(logit), rel=1e-4)
    assert_unchanged(model, before)


class LocalSum(nn.Module):
    """Fully convolutional, summed over the volume: a local, additive score with receptive-field radius 2."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.body = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 2, 3, padding=1))

    def forward(self, x):
        return self.body(x).sum((2, 3, 4))


@pytest.mark.parametrize("method, blend", [("gradient", "gaussian"), ("input_x_gradient", "constant"),
                                           ("integrated_gradients", "gaussian")])
def test_patchwise_equals_whole_volume_for_a_local_score(method, blend):
    from xaikit.saliency import explain_patches

    model = LocalSum().double().eval()
    x = torch.rand(2, 1, 16, 14, 18, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    params = {"n_steps": 4} if method == "integrated_gradients" else {}
    whole = explain(model, x, method, target=1, **params)
    # gradients at a voxel depend on inputs within 4 voxels (two 3^3 convs, then back): margin 4, overlap 8
    patched = explain_patches(model, x, method, target=1, patch=12, overlap=8, margin=4, blend=blend, **params)
    assert patched.params["patches"]["n_patches"] == 12
    assert torch.allclose(patched.maps.double(), whole.maps.double(), atol=1e-6 * float(whole.maps.abs().max()))
    # without the interior margin the patch borders are wrong: the test can fail
    naive = explain_patches(model, x, method, target=1, patch=12, overlap=8, margin=0, blend=blend, **params)
    assert not torch.allclose(naive.maps.double(), whole.maps.double(), atol=1e-3 * float(whole.maps.abs().max()))


def test_patchwise_one_patch_is_the_whole_volume_and_errors():
    from xaikit.errors import MemoryBudgetError
    from xaikit.saliency import explain_patches

    model, x = tiny_cnn3d(), volumes()
    whole = explain(model, x, "gradient")
    one = explain_patches(model, x, "gradient", patch=32)
    assert torch.equal(one.maps, whole.maps) and torch.equal(one.targets, whole.preds)
    assert one.params["patches"]["n_patches"] == 1 and one.target_policy == "pred"
    labels = torch.tensor([2, 0])
    by_label = explain_patches(model, x, "gradient", target="label", labels=labels, patch=6, overlap=4, margin=1)
    assert torch.equal(by_label.targets, labels) and by_label.target_policy == "label"
    with pytest.raises(ExplanationError, match="2 x margin"):
        explain_patches(model, x, "gradient", patch=4, overlap=1, margin=1)
    with pytest.raises(MemoryBudgetError, match=r"even one patch of \(8, 8, 8\)"):
        explain_patches(model, x, "gradient", patch=8, memory_budget=1000)
    with pytest.raises(ExplanationError, match="N x C x D x H x W"):
        explain_patches(model, torch.rand(1, 1, 8, 8), "gradient")


def test_volume_preset_runs_on_volumes():
    from xaikit.saliency import PRESETS

    model, x = tiny_cnn3d(), volumes(1)
    for label, spec in PRESETS["volume"].items():
        params = {k: v for k, v in spec.items() if k != "method"}
        if spec["method"] == "occlusion":
            params.update(window=4, stride=4)  # 8^3 test volume
        exp = explain(model, x, spec["method"], **params)
        assert METHODS[spec["method"]].supports_3d and exp.maps.shape == (1, 8, 8, 8), label


def test_volume_explanation_files_and_patch_provenance_roundtrip(tmp_path):
    from xaikit.saliency import Explanation, explain_patches

    model, x = tiny_cnn3d(), volumes()
    for exp in (explain(model, x, "gradcam"), explain_patches(model, x, "gradient", patch=6, overlap=4, margin=1)):
        exp.save(tmp_path / "e.pt")
        back = Explanation.load(tmp_path / "e.pt")
        assert torch.equal(back.maps, exp.maps) and back.maps.shape == (2, 8, 8, 8) and back.params == exp.params
        assert (back.raw is None) == (exp.raw is None)
