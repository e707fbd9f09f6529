"""Tests of xaikit.phantom: determinism, anatomy and masks, lesions, markers, sets, volume, grid."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from skimage import io

from xaikit.errors import ArgumentError
from xaikit.phantom import (
    MARKER_CORNERS,
    MASK_NAMES,
    VOLUME_LABELS,
    draw_chest,
    draw_chest_set,
    draw_volume,
    grid_image,
    write_grid,
)

SEEDS = range(12)


def _centroid_col(mask: np.ndarray) -> float:
    return float(np.nonzero(mask)[1].mean())


# --- draw_chest -------------------------------------------------------------------------------------


def test_same_seed_is_bit_identical_and_other_seed_differs():
    a = draw_chest(5, size=64, pneumonia=True, marker=True)
    b = draw_chest(5, size=64, pneumonia=True, marker=True)
    c = draw_chest(6, size=64, pneumonia=True, marker=True)
    assert a.image.tobytes() == b.image.tobytes()
    assert all(np.array_equal(a.masks[k], b.masks[k]) for k in MASK_NAMES)
    assert a.meta == b.meta
    assert json.loads(json.dumps(a.meta)) == a.meta  # plain types only, ready for a manifest or a report
    assert not np.array_equal(a.image, c.image)


def test_no_global_random_state_is_used_or_changed():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    first = draw_chest(1, size=48, pneumonia=True).image
    np.random.seed(999)
    second = draw_chest(1, size=48, pneumonia=True).image
    np.random.seed(123)
    assert np.array_equal(first, second)
    assert np.array_equal(np.random.get_state()[1], before)


@pytest.mark.parametrize("seed", SEEDS)
def test_image_and_masks_are_well_formed(seed):
    ph = draw_chest(seed, size=96, pneumonia=bool(seed % 2), marker=seed % 3 == 0)
    assert ph.image.dtype == np.float32 and ph.image.shape == (96, 96)
    assert 0.0 <= ph.image.min() and ph.image.max() <= 1.0
    assert set(ph.masks) == set(MASK_NAMES)
    for name, mask in ph.masks.items():
        assert mask.dtype == bool and mask.shape == (96, 96), name
    for name in ("left_lung", "right_lung", "heart", "body"):
        assert ph.masks[name].sum() > 0.01 * 96 * 96, name


@pytest.mark.parametrize("seed", SEEDS)
def test_anatomy_is_where_a_radiograph_shows_it(seed):
    m = draw_chest(seed, size=96, pneumonia=True).masks
    lungs = m["left_lung"] | m["right_lung"]
    assert not (m["left_lung"] & m["right_lung"]).any()
    assert not (lungs & m["heart"]).any()
    assert not (lungs & ~m["body"]).any() and not (m["heart"] & ~m["body"]).any()
    assert not (m["lesion"] & ~lungs).any()
    # radiological display: the patient's left lung and the heart appear on the image right
    assert _centroid_col(m["left_lung"]) > 48 > _centroid_col(m["right_lung"])
    assert _centroid_col(m["heart"]) > 48
    # the right lung is the bigger one, the lungs are larger than the heart
    assert m["right_lung"].sum() > 0.9 * m["left_lung"].sum()
    assert m["right_lung"].sum() > m["heart"].sum()


@pytest.mark.parametrize("seed", SEEDS)
def test_lungs_are_darker_than_their_surroundings(seed):
    ph = draw_chest(seed, size=96)
    lungs = ph.masks["left_lung"] | ph.masks["right_lung"]
    soft = ph.masks["body"] & ~lungs
    assert ph.image[lungs].mean() < ph.image[soft].mean() - 0.15


@pytest.mark.parametrize("seed", SEEDS)
def test_pneumonia_opacity_is_brighter_than_the_rest_of_its_lung(seed):
    ph = draw_chest(seed, size=96, pneumonia=True)
    lesion = ph.masks["lesion"]
    assert ph.label == 1 and lesion.any()
    for side in ("left_lung", "right_lung"):
        inside = lesion & ph.masks[side]
        if inside.sum() >= 5:
            rest = ph.masks[side] & ~lesion
            assert ph.image[inside].mean() > ph.image[rest].mean() + 0.02, side


def test_normal_image_has_no_lesion_and_label_zero():
    ph = draw_chest(4, size=64)
    assert ph.label == 0 and not ph.masks["lesion"].any() and not ph.masks["marker"].any()


def test_same_patient_shares_anatomy_but_not_pose():
    a = draw_chest(10, size=64, anatomy_seed=77)
    b = draw_chest(11, size=64, anatomy_seed=77)
    assert a.meta["anatomy"] == b.meta["anatomy"] and a.meta["pose"] != b.meta["pose"]
    assert draw_chest(10, size=64).meta["anatomy"] != a.meta["anatomy"]


@pytest.mark.parametrize("corner", MARKER_CORNERS)
def test_marker_is_a_bright_tag_in_the_requested_corner(corner):
    ph = draw_chest(3, size=96, marker=True, marker_corner=corner)
    rows, cols = np.nonzero(ph.masks["marker"])
    assert rows.size > 0
    assert (rows.max() < 32) if corner.startswith("top") else (rows.min() > 64)
    assert (cols.max() < 32) if corner.endswith("left") else (cols.min() > 64)
    tag = ph.image[ph.masks["marker"]]
    assert np.median(tag) > 0.8 and tag.min() < 0.25  # bright box, dark glyph
    plain = draw_chest(3, size=96, marker=False)
    assert np.array_equal(plain.image[~ph.masks["marker"]], ph.image[~ph.masks["marker"]])


@pytest.mark.parametrize(
    "kwargs, word",
    [({"seed": -1}, "seed"), ({"seed": 1.5}, "seed"), ({"seed": 0, "size": 16}, "size"),
     ({"seed": 0, "marker_corner": "middle"}, "marker_corner"), ({"seed": 0, "anatomy_seed": -3}, "seed")],
)  # fmt: skip
def test_bad_arguments_name_the_argument(kwargs, word):
    seed = kwargs.pop("seed")
    with pytest.raises(ArgumentError, match=word):
        draw_chest(seed, **kwargs)


# --- draw_chest_set ---------------------------------------------------------------------------------


def test_marker_rates_follow_the_label_within_binomial_tolerance():
    cs = draw_chest_set(400, seed=3, size=32, prevalence=0.5, marker_rate_pos=0.9, marker_rate_neg=0.1)
    assert cs.labels.sum() == 200
    for label, rate in ((1, 0.9), (0, 0.1)):
        observed = cs.markers[cs.labels == label].mean()
        assert abs(observed - rate) < 3.5 * np.sqrt(rate * (1 - rate) / 200), (label, observed)
    none = draw_chest_set(400, seed=3, size=32)
    assert not none.markers.any()


def test_set_items_follow_the_plan_and_are_reproducible():
    cs = draw_chest_set(6, seed=2, size=48, marker_rate_pos=0.5, marker_rate_neg=0.5)
    again = draw_chest_set(6, seed=2, size=48, marker_rate_pos=0.5, marker_rate_neg=0.5)
    assert cs.table().equals(again.table())
    for i, ph in enumerate(cs):
        assert ph.label == cs.labels[i]
        assert ph.masks["marker"].any() == cs.markers[i]
        assert ph.masks["lesion"].any() == bool(cs.labels[i])
        assert ph.meta["image_id"] == cs.image_ids[i] and ph.meta["patient_id"] == cs.patient_ids[i]
    direct = draw_chest(int(cs.image_seeds[1]), size=48, pneumonia=bool(cs.labels[1]), marker=bool(cs.markers[1]),
                        anatomy_seed=int(cs.anatomy_seeds[1]))  # fmt: skip
    assert np.array_equal(direct.image, cs[1].image)
    assert np.array_equal(cs[-1].image, cs[5].image) and len(cs[1:3]) == 2
    with pytest.raises(IndexError):
        cs[6]


def test_patients_share_label_and_anatomy_and_have_synthetic_ids():
    cs = draw_chest_set(40, seed=1, size=32, n_patients=10)
    table = cs.table()
    assert table["patient_id"].nunique() == 10
    assert all(re.fullmatch(r"P\d{4}", p) for p in table["patient_id"])
    per_patient = table.groupby("patient_id").agg(labels=("label", "nunique"), anat=("anatomy_seed", "nunique"))
    assert (per_patient["labels"] == 1).all() and (per_patient["anat"] == 1).all()
    assert table.groupby("patient_id")["label"].first().sum() == 5
    first, *others = np.flatnonzero(table["patient_id"] == table["patient_id"].iloc[0])
    if others:
        assert cs[first].meta["anatomy"] == cs[others[0]].meta["anatomy"]
    assert table["image_seed"].nunique() == 40


@pytest.mark.parametrize(
    "kwargs, word",
    [({"n": 0}, "n "), ({"n": 5, "prevalence": 1.5}, "prevalence"),
     ({"n": 5, "marker_rate_pos": -0.1}, "marker_rate_pos"),
     ({"n": 5, "n_patients": 6}, "n_patients"), ({"n": 5, "marker_corner": "up"}, "marker_corner"),
     ({"n": 5, "seed": -2}, "seed")],
)  # fmt: skip
def test_set_bad_arguments_name_the_argument(kwargs, word):
    n = kwargs.pop("n")
    with pytest.raises(ArgumentError, match=word):
        draw_chest_set(n, **kwargs)


# --- volume and grid --------------------------------------------------------------------------------


def test_volume_label_map_matches_names_and_anatomy():
    vol = draw_volume(0, shape=(32, 40, 40))
    assert vol.image.shape == vol.labels.shape == (32, 40, 40) and vol.image.dtype == np.float32
    assert set(np.unique(vol.labels).tolist()) == set(vol.names) == set(VOLUME_LABELS)
    assert len(vol.spacing) == 3 and min(vol.spacing) > 0
    mean = {name: vol.image[vol.labels == k].mean() for k, name in vol.names.items()}
    assert mean["right_lung"] < -500 and mean["background"] < -800 and mean["spine"] > 200
    assert mean["lesion"] > mean["right_lung"] + 300 or mean["lesion"] > mean["left_lung"] + 300
    # patient's left on the image right (larger W index), heart anterior (smaller H) to the spine
    cols = {name: np.nonzero(vol.labels == k)[2].mean() for k, name in vol.names.items()}
    rows = {name: np.nonzero(vol.labels == k)[1].mean() for k, name in vol.names.items()}
    assert cols["left_lung"] > cols["right_lung"] and rows["heart"] < rows["spine"]
    same = draw_volume(0, shape=(32, 40, 40))
    assert np.array_equal(same.image, vol.image) and np.array_equal(same.labels, vol.labels)
    assert not np.array_equal(draw_volume(1, shape=(32, 40, 40)).labels, vol.labels)


def test_volume_without_lesion_and_affine_orientation():
    vol = draw_volume(2, shape=(16, 24, 24), lesion=False)
    assert 6 not in vol.names and not (vol.labels == 6).any()
    centre = vol.affine @ np.r_[(np.array(vol.labels.shape) - 1) / 2, 1.0]
    assert np.allclose(centre[:3], 0.0)
    step_w = vol.affine @ np.array([0, 0, 1, 0.0])
    assert step_w[0] == -vol.spacing[2]  # going along W moves to the patient's left (-x in RAS)
    step_d = vol.affine @ np.array([1, 0, 0, 0.0])
    assert step_d[2] == vol.spacing[0]  # going along D moves superior (+z in RAS), as read_volume lays files out
    full = draw_volume(2, shape=(16, 24, 24))
    depth = {name: np.nonzero(full.labels == k)[0].mean() for k, name in full.names.items()}
    assert depth["heart"] < depth["right_lung"] and depth["heart"] < depth["left_lung"]  # heart below the apices
    with pytest.raises(ArgumentError, match="shape"):
        draw_volume(0, shape=(8, 32, 32))


def test_grid_image_and_png(tmp_path):
    grid = grid_image(4, seed=1, size=32, cols=2, gap=2)
    assert grid.shape == (66, 66) and grid.dtype == np.float32
    assert grid[32:34].max() == 0 and grid[:32, :32].max() > 0.5
    path = tmp_path / "grid.png"
    write_grid(path, 4, seed=1, size=32, cols=2)
    written = io.imread(path)
    assert written.dtype == np.uint8 and written.shape == (66, 66)
    assert np.abs(written / 255.0 - grid).max() <= 0.5 / 255 + 1e-6
