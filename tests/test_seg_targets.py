"""Segmentation targets: identities on per-pixel linear models, completeness, LRP conservation, every method on a
tiny UNet, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xaikit import XaikitError
from xaikit.errors import ExplanationError
from xaikit.models import UNet
from xaikit.regions import RegionSet
from xaikit.saliency import METHODS, explain, targets

from saliency_helpers import FAST_LAYER_SAMPLED, assert_unchanged, snapshot

pytestmark = pytest.mark.usefixtures("one_thread")


FAST = {**FAST_LAYER_SAMPLED, "integrated_gradients": {"n_steps": 4},
        "smoothgrad": {"n_samples": 3}, "smoothgrad_sq": {"n_samples": 3},
        "vargrad": {"n_samples": 3}, "gradient_shap": {"n_samples": 3}, "lime": {"n_samples": 12, "n_segments": 8},
        "kernel_shap": {"n_samples": 12, "n_segments": 8}, "feature_ablation": {"n_segments": 8},
        "occlusion": {"window": 4, "stride": 4}}


def tiny_unet(bias: bool = True, batch_norm: bool = True, dtype=torch.float32, smooth: bool = False) -> UNet:
    """A seeded two-level UNet; ``smooth``: softplus and average pooling (no kinks, for path integrals)."""
    torch.manual_seed(0)
    net = UNet(3, in_channels=2, widths=(4, 6), batch_norm=batch_norm, bias=bias)
    if smooth:
        net.pool = nn.AvgPool2d(2)
        for block in [*net.encoders, *net.decoders]:
            for i, m in enumerate(block):
                if isinstance(m, nn.ReLU):
                    block[i] = nn.Softplus(beta=4.0)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2)
    return net.to(dtype).eval()


def inputs(n: int = 2, dtype=torch.float32) -> torch.Tensor:
    return torch.rand(n, 2, 16, 16, generator=torch.Generator().manual_seed(1), dtype=dtype)


def gt_masks(n: int = 2) -> torch.Tensor:
    masks = torch.zeros(n, 16, 16, dtype=torch.bool)
    masks[0, 2:9, 3:12] = True
    masks[1:, 6:14, 1:7] = True
    return masks


def score(net, x, masks, k, reduce="sum"):
    with torch.no_grad():
        sel = net(x)[:, k] * masks.to(x.dtype)
    out = sel.flatten(1).sum(1)
    return out / masks.flatten(1).sum(1) if reduce == "mean" else out


@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_input_x_gradient_of_masked_sum_on_per_pixel_linear_model_is_the_analytic_contribution(reduce):
    torch.manual_seed(0)
    net = nn.Conv2d(2, 3, 1, bias=False).double().eval()
    x, masks = inputs(dtype=torch.float64), gt_masks()
    exp = explain(net, x, "input_x_gradient", targets.segmentation(2, mask=masks, reduce=reduce))
    w = net.weight[2, :, 0, 0].detach()  # C
    expected = x * w.view(1, -1, 1, 1) * masks[:, None].double()
    if reduce == "mean":
        expected = expected / masks.flatten(1).sum(1).view(-1, 1, 1, 1)
    torch.testing.assert_close(exp.raw.double(), expected, rtol=1e-5, atol=1e-6)
    assert exp.target_policy == "segmentation" and exp.targets.tolist() == [2, 2]
    assert exp.preds.tolist() == [-1, -1] and exp.probs.shape == (2, 0)


@pytest.mark.parametrize("mask", ["pred", "gt", "box"])
def test_integrated_gradients_completeness_for_masked_targets(mask):
    net, x = tiny_unet(dtype=torch.float64, smooth=True), inputs(dtype=torch.float64)
    with torch.no_grad():
        classes = net(x).argmax(1)
    k = int(classes.flatten().mode().values)  # a class the model predicts somewhere in both images
    box = torch.zeros(2, 16, 16, dtype=torch.bool)
    box[:, 3:11, 2:14] = True
    masks = {"pred": classes == k, "gt": gt_masks(), "box": box}[mask]
    assert masks.flatten(1).any(1).all()
    target = {"pred": targets.segmentation(k), "gt": targets.segmentation(k, mask=gt_masks()),
              "box": targets.segmentation(k, box=(2, 3, 14, 11))}[mask]
    exp = explain(net, x, "integrated_gradients", target, n_steps=32)
    gap = score(net, x, masks, k) - score(net, torch.zeros_like(x), masks, k)
    assert gap.abs().min() > 5e-3
    torch.testing.assert_close(exp.raw.double().flatten(1).sum(1), gap, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_lrp_conserves_the_masked_score_on_a_bias_free_unet(reduce):
    net, x = tiny_unet(bias=False, batch_norm=False, dtype=torch.float64), inputs(dtype=torch.float64)
    masks = gt_masks()
    exp = explain(net, x, "lrp_epsilon", targets.segmentation(0, mask=masks, reduce=reduce), epsilon=1e-12)
    torch.testing.assert_close(exp.raw.double().flatten(1).sum(1), score(net, x, masks, 0, reduce), rtol=1e-6,
                               atol=1e-8)


def test_lrp_epsilon_equals_input_x_gradient_on_a_bias_free_relu_unet():
    net, x = tiny_unet(bias=False, batch_norm=False, dtype=torch.float64), inputs(dtype=torch.float64)
    target = targets.segmentation(2, mask=gt_masks(), reduce="mean")
    lrp = explain(net, x, "lrp_epsilon", target, epsilon=1e-12)
    ixg = explain(net, x, "input_x_gradient", target)
    torch.testing.assert_close(lrp.raw.double(), ixg.raw.double(), rtol=1e-6, atol=1e-9)


def test_images_are_explained_independently_of_batching():
    """Per-image masks: two images explained together equal each explained alone (IG expands batches)."""
    net, x = tiny_unet(), inputs(3)
    masks = gt_masks(3)
    together = explain(net, x, "integrated_gradients", targets.segmentation(1, mask=masks), n_steps=8)
    for i in range(3):
        alone = explain(net, x[i : i + 1], "integrated_gradients", targets.segmentation(1, mask=masks[i]), n_steps=8)
        torch.testing.assert_close(together.maps[i : i + 1], alone.maps, rtol=1e-5, atol=1e-6)


def test_region_of_a_regionset_is_a_mask_target():
    net, x = tiny_unet(), inputs()
    regions = RegionSet(["heart", "lung"], np.stack([gt_masks().numpy(), ~gt_masks().numpy()], 1))
    by_region = explain(net, x, "gradient", targets.segmentation(1, mask=regions, region="lung"))
    by_mask = explain(net, x, "gradient", targets.segmentation(1, mask=~gt_masks()))
    torch.testing.assert_close(by_region.maps, by_mask.maps)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_on_a_tiny_unet_with_a_mask_target(name):
    net, x = tiny_unet(), inputs()
    before = snapshot(net)
    exp = explain(net, x, name, targets.segmentation(1, mask=gt_masks()), **FAST.get(name, {}))
    assert exp.maps.shape == (2, 16, 16) and torch.isfinite(exp.maps).all()
    assert exp.target_policy == "segmentation" and exp.targets.tolist() == [1, 1]
    if not METHODS[name].signed:
        assert exp.maps.min() >= -1e-6
    assert_unchanged(net, before)


@pytest.mark.parametrize("target, match", [
    (lambda: targets.segmentation(1, mask=torch.ones(8, 8, dtype=torch.bool)), r"mask has shape \(1, 8, 8\) but"),
    (lambda: targets.segmentation(1, mask=torch.zeros(16, 16, dtype=torch.bool)),
     r"mask is empty for image\(s\) \[0, 1\]"),
    (lambda: targets.segmentation(5, mask="pred"), r"class_index=5 is out of range; the model has 3 output channels"),
    (lambda: targets.segmentation(1, box=(20, 20, 30, 30)), r"box is empty"),
    (lambda: targets.segmentation(1, mask=torch.rand(16, 16)), "must be boolean"),
    (lambda: targets.segmentation(1, mask=RegionSet(["a"], np.ones((1, 16, 16), bool)), region="b"), "region= one of"),
    (lambda: 1, "returns outputs of 4 dimensions, not logits N x K; explain a segmentation model with"),
    (lambda: "pred", "targets.segmentation"),
])
def test_bad_segmentation_targets_raise_and_leave_the_model_unchanged(target, match):
    net = tiny_unet()
    net.train()
    before = snapshot(net)
    for method in ("gradient", "lrp_epsilon", "occlusion"):
        with pytest.raises(XaikitError, match=match):
            explain(net, inputs(), method, target())
    assert_unchanged(net, before)


def test_bad_helper_arguments():
    with pytest.raises(ExplanationError, match="class_index must be an int"):
        targets.segmentation(1.5)
    with pytest.raises(ExplanationError, match=r"reduce='max' is not known"):
        targets.segmentation(1, reduce="max")


def test_segmentation_target_on_a_classifier_is_refused():
    net = nn.Sequential(nn.Flatten(), nn.Linear(2 * 16 * 16, 3)).eval()
    with pytest.raises(ExplanationError, match=r"returns shape \(2, 3\), not N x K x H x W"):
        explain(net, inputs(), "gradient", targets.segmentation(1))


def test_explain_many_splits_per_image_masks_by_batch_and_does_not_cache_them(tmp_path):
    from xaikit.saliency import explain_many

    net, x, masks = tiny_unet(), inputs(3), gt_masks(3)
    target = targets.segmentation(1, mask=masks)
    with pytest.warns(UserWarning, match="does not cache results for a callable, mask or box target"):
        many = explain_many(net, x, "gradient", target=target, batch_size=2, cache_dir=tmp_path, progress=False)
    one = explain(net, x, "gradient", target)
    torch.testing.assert_close(many["gradient"].maps, one.maps)
    boxes = torch.tensor([[0, 0, 8, 8], [4, 4, 12, 12], [8, 8, 16, 16]])
    many = explain_many(net, x, "gradient", target=targets.segmentation(1, box=boxes), batch_size=2, progress=False)
    torch.testing.assert_close(many["gradient"].maps,
                               explain(net, x, "gradient", targets.segmentation(1, box=boxes)).maps)


def test_method_grid_labels_rows_of_a_segmentation_explanation():
    """No class prediction to show: the row names the segmentation target instead (notebook 08's grid)."""
    from xaikit.viz.saliency import method_grid, row_label

    net = tiny_unet()
    x = inputs()
    exp = explain(net, x, "gradient", targets.segmentation(2, mask=gt_masks()), image_ids=["a", "b"])
    assert row_label(exp, 1, ["background", "lung", "heart"]) == "b<br>segmentation heart"
    fig = method_grid(x, {"gradient": exp})
    assert [a.title.text for a in (fig.layout.yaxis, )] == ["a<br>segmentation class 2"]
