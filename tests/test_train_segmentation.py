"""Segmentation and box metrics against brute-force references; tiny training runs that must learn."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from xaikit.errors import ArgumentError
from xaikit.models import build_model
from xaikit.train.detection import box_scores, fit_boxes, mean_average_precision, predict_boxes
from xaikit.train.segmentation import dice_iou, fit_segmentation, hd95, predict_labelmaps, segmentation_scores

pytestmark = pytest.mark.usefixtures("one_thread")


def _disc(shape, center, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def _hd95_brute(a, b, spacing=(1.0, 1.0)):
    """Surfaces by 4-neighbour test, all pairwise distances: the definition, slowly."""
    def surface(m):
        pad = np.pad(m, 1)
        inner = pad[1:-1, 1:-1] & pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:] & \
            pad[:-2, :-2] & pad[:-2, 2:] & pad[2:, :-2] & pad[2:, 2:]
        return np.argwhere(m & ~inner) * np.asarray(spacing)
    sa, sb = surface(a), surface(b)
    d = cdist(sa, sb)
    return np.percentile(np.concatenate([d.min(1), d.min(0)]), 95)


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (0.5, 2.0)])
def test_hd95_matches_brute_force(spacing):
    a, b = _disc((40, 40), (18, 20), 9), _disc((40, 40), (22, 17), 7)
    b[5:8, 30:34] = True  # an outlier blob
    assert hd95(a, b, spacing) == pytest.approx(_hd95_brute(a, b, spacing), rel=1e-9)
    assert hd95(a, a) == 0.0
    assert np.isnan(hd95(a, np.zeros_like(a)))


def test_dice_and_iou_identities():
    a = np.zeros((10, 10), bool)
    b = a.copy()
    a[2:6, 2:6], b[4:8, 4:8] = True, True  # 16 px each, overlap 4
    assert dice_iou(a, b) == pytest.approx((8 / 32, 4 / 28))
    d, i = dice_iou(a, b)
    assert d == pytest.approx(2 * i / (1 + i))
    assert dice_iou(a, a) == (1.0, 1.0)
    assert all(np.isnan(dice_iou(np.zeros_like(a), np.zeros_like(a))))


def test_segmentation_scores_table_and_patient_bootstrap():
    rng = np.random.default_rng(0)
    truth = np.zeros((6, 20, 20), int)
    truth[:, 4:12, 4:12] = 1
    truth[:, 14:18, 10:18] = 2
    pred = truth.copy()
    pred[:3, 4:12, 4:8] = 0  # half of class 1 missed in three images
    per_image, summary = segmentation_scores(pred, truth, ["bg", "a", "b"], patient_ids=list("ppqqrs"), n_boot=200)
    assert list(per_image.columns) == ["image_id", "class", "dice", "iou", "hd95"] and len(per_image) == 12
    s = summary.set_index(["class", "metric"])
    assert s.loc[("b", "dice"), "value"] == 1.0 and s.loc[("b", "dice"), "ci_low"] == 1.0
    expected = np.mean([2 * 32 / (32 + 64)] * 3 + [1.0] * 3)
    assert s.loc[("a", "dice"), "value"] == pytest.approx(expected)
    assert s.loc[("a", "dice"), "ci_low"] <= expected <= s.loc[("a", "dice"), "ci_high"]
    assert s.loc[("a", "dice"), "ci_low"] < s.loc[("a", "dice"), "ci_high"]
    with pytest.raises(ArgumentError, match="same shape"):
        segmentation_scores(pred[:, :5], truth, ["bg", "a", "b"])
    del rng


def test_box_scores_iou_hit_rate_and_map():
    truth = torch.tensor([[0.1, 0.1, 0.5, 0.5]] * 4)
    pred = truth.clone()
    pred[3] = torch.tensor([0.6, 0.6, 0.9, 0.9])  # a miss
    per_image, summary = box_scores(pred, truth, n_boot=50)
    s = summary.set_index("metric")
    assert per_image["iou"].tolist() == pytest.approx([1, 1, 1, 0])
    assert s.at["iou", "value"] == pytest.approx(0.75) and s.at["hit_rate_50", "value"] == pytest.approx(0.75)
    # one box per image, equal scores: precision 1 up to recall 3/4, COCO 101-point interpolation
    assert s.at["map_50", "value"] == pytest.approx(mean_average_precision(pred, truth))
    assert 0.7 < s.at["map_50", "value"] < 0.8
    assert mean_average_precision(truth, truth) == pytest.approx(1.0)


def test_tiny_unet_and_box_model_learn_a_square():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(24, 1, 16, 16, generator=g) * 0.2
    labels = torch.zeros(24, 16, 16, dtype=torch.long)
    boxes = torch.zeros(24, 4)
    for i in range(24):
        r, c = torch.randint(0, 9, (2,), generator=g).tolist()
        x[i, 0, r : r + 6, c : c + 6] += 1
        labels[i, r : r + 6, c : c + 6] = 1
        boxes[i] = torch.tensor([c, r, c + 6, r + 6]) / 16
    unet = build_model("unet", num_classes=2, widths=(4, 8))
    history = fit_segmentation(unet, x, labels, epochs=15, batch_size=8, lr=1e-2)
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    _, summary = segmentation_scores(predict_labelmaps(unet, x), labels, ["bg", "square"], n_boot=0)
    assert summary.set_index("metric").at["dice", "value"] > 0.8
    net = build_model("small_cnn", num_classes=4, widths=(8, 16))
    history = fit_boxes(net, x, boxes, epochs=40, batch_size=8, lr=1e-2)
    assert history["loss"].iloc[-1] < 0.5 * history["loss"].iloc[0]
    assert box_scores(predict_boxes(net, x), boxes, n_boot=0)[1].set_index("metric").at["iou", "value"] > 0.4
