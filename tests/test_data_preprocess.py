"""Preprocess (intensity, geometry, channels; masks follow the image) and Augment (masks stay aligned)."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from xaikit.data import Augment, Preprocess
from xaikit.data.preprocess import IMAGENET_MEAN, IMAGENET_STD
from xaikit.errors import ArgumentError
from xaikit.io import MedicalImage


def _square_image(shape=(100, 200), box=(slice(40, 60), slice(120, 160))):
    image = np.zeros(shape, np.float32)
    image[box] = 1.0
    mask = np.zeros(shape, bool)
    mask[box] = True
    return image, mask


@pytest.mark.parametrize("mode", ["resize", "letterbox"])
def test_masks_follow_the_image_geometry(mode):
    image, mask = _square_image()
    x, masks = Preprocess(size=64, mode=mode, normalize="none")(image, {"box": mask})
    bright = x[0].numpy() > 0.5
    moved = masks["box"].numpy()
    iou = (bright & moved).sum() / (bright | moved).sum()
    assert iou > 0.85, f"{mode}: mask and image disagree (IoU {iou:.2f})"
    if mode == "letterbox":  # 100 x 200 -> 32 x 64 placed 16 rows down; padding is False / the minimum
        assert not moved[:16].any() and not moved[48:].any() and float(x[0, :16].max()) == 0.0


def test_geometry_inverse_maps_back_onto_the_original_grid():
    pre = Preprocess(size=(48, 48), mode="letterbox")
    geo = pre.geometry((60, 120))
    plane = np.tile(np.linspace(0, 1, 120, dtype=np.float32), (60, 1))
    back = geo.inverse(geo.image(plane))
    assert back.shape == (60, 120)
    assert np.abs(back - plane)[:, 4:-4].max() < 0.03


def test_percentile_window_and_imagenet_normalization():
    rng = np.random.default_rng(0)
    plane = rng.normal(100, 20, (64, 64)).astype(np.float32)
    x, _ = Preprocess(size=64, percentiles=(1, 99))(plane)
    lo, hi = np.percentile(plane, (1, 99))
    np.testing.assert_allclose(x[0].numpy(), np.clip((plane - lo) / (hi - lo), 0, 1), atol=1e-5)
    ct = MedicalImage(plane, window=(100.0, 40.0))  # [80, 120] -> [0, 1]
    w, _ = Preprocess(size=64, normalize="window")(ct)
    np.testing.assert_allclose(w[0].numpy(), np.clip((plane - 80) / 40, 0, 1), atol=1e-5)
    three, _ = Preprocess(size=64, channels=3, normalize="imagenet", percentiles=(1, 99))(plane)
    expected = (x[0].numpy() - np.array(IMAGENET_MEAN)[:, None, None]) / np.array(IMAGENET_STD)[:, None, None]
    np.testing.assert_allclose(three.numpy(), expected, atol=1e-5)
    with pytest.raises(ArgumentError, match="has no window"):
        Preprocess(size=64, normalize="window")(plane)


def test_serializes_to_plain_json_and_back():
    pre = Preprocess(size=(96, 128), mode="letterbox", channels=3, normalize="window", window=(40, 400))
    d = json.loads(json.dumps(pre.to_dict()))
    assert Preprocess.from_dict(d) == pre and hash(Preprocess.from_dict(d)) == hash(pre)
    assert Preprocess(size=96) != pre
    with pytest.raises(ArgumentError, match=r"unknown keys \['colour'\]"):
        Preprocess.from_dict({**d, "colour": True})


@pytest.mark.parametrize("kwargs, match", [
    ({"channels": 2}, "must be 1"), ({"mode": "crop"}, "mode"), ({"normalize": "zscore"}, "normalize"),
])
def test_bad_settings(kwargs, match):
    with pytest.raises(ArgumentError, match=match):
        Preprocess(**kwargs)


def test_bad_images_and_masks():
    pre = Preprocess(size=32)
    with pytest.raises(ArgumentError, match="2D image"):
        pre(np.zeros((2, 8, 8)))
    with pytest.raises(ArgumentError, match="NaN/inf"):
        pre(np.full((8, 8), np.nan))
    with pytest.raises(ArgumentError, match="Mask 'lung' has shape"):
        pre(np.zeros((8, 8)), {"lung": np.zeros((4, 4), bool)})


def test_augment_moves_masks_with_the_image_and_is_reproducible():
    image, mask = _square_image((64, 64), (slice(20, 40), slice(10, 30)))
    aug = Augment(rotate_deg=15, translate=0.1, brightness=0.0, contrast=0.0, seed=1)
    x, masks = aug(torch.from_numpy(image)[None], {"box": torch.from_numpy(mask)})
    moved, bright = masks["box"].numpy(), x[0].numpy() > 0.5
    assert masks["box"].dtype == torch.bool and not np.array_equal(moved, mask)  # it did move
    assert (bright & moved).sum() / (bright | moved).sum() > 0.85
    again = Augment(rotate_deg=15, translate=0.1, brightness=0.0, contrast=0.0, seed=1)
    torch.testing.assert_close(again(torch.from_numpy(image)[None], {"box": torch.from_numpy(mask)})[0], x)
    state = torch.random.get_rng_state()
    aug(torch.from_numpy(image)[None])
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is not touched


def test_augment_defaults_do_not_flip():
    assert Augment().flip is False
    with pytest.raises(ArgumentError, match="scale"):
        Augment(scale=(1.2, 0.8))


def test_resize_warns_when_it_changes_the_aspect_ratio():
    from xaikit.data.preprocess import AspectRatioWarning

    radiograph = np.random.default_rng(0).random((65, 103))  # the 650 x 1028 shape of a real radiograph, scaled
    with pytest.warns(AspectRatioWarning, match=r"stretches this 103 x 65 \(width x height\) image to the "
                                                 r"model's 32 x 32 input.*"
                                                 r"crop or pad") as caught:
        Preprocess(size=32)(radiograph)
    assert len(caught) == 1 and "letterbox" not in str(caught[0].message)  # not an option of a trained model
    from xaikit.data.preprocess import prepare_many

    with pytest.warns(AspectRatioWarning) as caught:  # once per call, however many images
        prepare_many(Preprocess(size=32), [radiograph, radiograph.T, radiograph[:40, :40]])
    assert len(caught) == 1 and "2 of 3 images (width x height: 103 x 65, 65 x 103)" in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AspectRatioWarning)
        Preprocess(size=32, mode="letterbox")(radiograph)  # keeps the ratio: silent
        Preprocess(size=32)(radiograph[:, :66])  # within 5 %: silent
        Preprocess(size=(32, 48))(radiograph[:, :98])  # the same ratio as the size: silent


def test_a_dataset_reports_stretched_images_once(tmp_path):
    from PIL import Image

    from xaikit.data import ManifestDataset
    from xaikit.data.preprocess import AspectRatioWarning

    rows = []
    for k, (h, w) in enumerate([(40, 64), (50, 90), (32, 32), (44, 70)]):
        Image.fromarray(np.random.default_rng(k).integers(0, 255, (h, w), dtype=np.uint8)).save(tmp_path / f"{k}.png")
        rows.append({"image_path": f"{k}.png", "label": "a" if k % 2 else "b", "patient_id": f"p{k}"})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    data = ManifestDataset(tmp_path / "m.csv", preprocess=Preprocess(size=16))
    with pytest.warns(AspectRatioWarning) as caught:
        [data[i] for i in range(len(data))]
    assert len(caught) == 1 and "this 64 x 40 (width x height) image" in str(caught[0].message)
    assert "the first such image of this dataset (4 images)" in str(caught[0].message)
