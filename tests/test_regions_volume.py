"""Region scores on volumes: label maps as regions, the same numbers as a brute-force computation, mm^3,
alignment checks, and the statistics module on the volume table unchanged."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xaikit.data import VolumePreprocess
from xaikit.errors import RegionError
from xaikit.io import write_nifti
from xaikit.phantom import VOLUME_WINDOW, draw_volume
from xaikit.regions import RegionSet, label_regions, region_scores, stack_regions


def test_volume_scores_match_brute_force_and_report_mm3():
    vol = draw_volume(2, shape=(16, 20, 24))
    rs = label_regions(vol.labels, vol.names, spacing=vol.spacing)
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(3, 16, 20, 24))
    df = region_scores(maps, rs, sign="positive")
    assert len(df) == 3 * len(rs)
    pos = np.maximum(maps, 0)
    for (i, region), row in df.set_index(["image_id", "region"]).iterrows():
        mask = rs[region]
        m = pos[int(i)]
        assert row["mass_frac"] == pytest.approx(m[mask].sum() / m.sum(), rel=1e-5)
        assert row["mean"] == pytest.approx(m[mask].mean(), rel=1e-5)
        assert row["max"] == pytest.approx(m[mask].max(), rel=1e-5)
        assert row["n_voxels"] == mask.sum()
        assert row["volume_mm3"] == pytest.approx(mask.sum() * np.prod(vol.spacing))
        assert row["pointing"] == float(mask.reshape(-1)[np.argmax(m)])


def test_label_map_from_nifti_through_preprocess_and_per_image_sets(tmp_path):
    from xaikit.io import MedicalImage, read_volume

    vol = draw_volume(4, shape=(20, 24, 24))
    write_nifti(vol.as_image(), tmp_path / "ct.nii.gz")
    write_nifti(MedicalImage(vol.labels.astype(np.float32), spacing=vol.spacing, affine=vol.affine),
                tmp_path / "ct_labels.nii.gz")
    image = read_volume(tmp_path / "ct.nii.gz")
    pre = VolumePreprocess(shape=16, spacing=20.0, window=VOLUME_WINDOW)
    rs = label_regions(tmp_path / "ct_labels.nii.gz", vol.names, image=image, preprocess=pre)
    assert rs.shape == (16, 16, 16) and rs.spacing == pytest.approx((20.0, 20.0, 20.0))
    lesion = read_volume(tmp_path / "ct_labels.nii.gz").array == 6  # read_volume's layout, not the phantom's
    x, masks = pre(image, {"lesion": lesion})
    # same nearest-neighbour geometry as the masks
    assert masks["lesion"].any() and np.array_equal(rs["lesion"], masks["lesion"].numpy())
    per_image = stack_regions([rs, rs])
    assert per_image.masks.shape == (2, len(rs), 16, 16, 16) and not per_image.shared
    df = region_scores(np.stack([x[0].numpy()] * 2), per_image, image_ids=["a", "b"])
    assert set(df["image_id"]) == {"a", "b"} and (df["volume_mm3"] == df["n_voxels"] * 8000.0).all()


def test_misaligned_or_unnamed_label_maps_are_refused(tmp_path):
    from xaikit.io import MedicalImage

    vol = draw_volume(4, shape=(16, 16, 16))
    image = vol.as_image()
    shifted = vol.affine.copy()
    shifted[:3, 3] += 5.0
    write_nifti(MedicalImage(vol.labels.astype(np.float32), spacing=vol.spacing, affine=shifted),
                tmp_path / "other_labels.nii.gz")
    with pytest.raises(RegionError, match=r"other_labels\.nii\.gz is not aligned.*affines differ"):
        label_regions(tmp_path / "other_labels.nii.gz", vol.names, image=image)
    with pytest.raises(RegionError, match=r"shape \(16, 16, 15\).*not on the image's grid"):
        label_regions(vol.labels[:, :, :15], vol.names, image=image)
    with pytest.raises(RegionError, match=r"label values \[6\] have no name"):
        label_regions(vol.labels, {k: v for k, v in vol.names.items() if k != 6}, spacing=vol.spacing)
    rs = label_regions(vol.labels, vol.names)
    with pytest.raises(RegionError, match="Maps are 16 x 16 x 8 but the regions are 16 x 16 x 16"):
        region_scores(np.zeros((1, 16, 16, 8)), rs)


def test_statistics_work_unchanged_on_volume_tables():
    from xaikit.stats import compare_groups

    rng = np.random.default_rng(1)
    vol = draw_volume(0, shape=(16, 16, 16))
    rs = label_regions(vol.labels, vol.names, spacing=vol.spacing)
    maps = rng.random((12, 16, 16, 16))
    labels = np.repeat([0, 1], 6)
    maps[labels == 1] += 3.0 * rs["lesion"]  # more relevance on the lesion in class 1
    df = region_scores(maps, rs, labels=labels, method="gradient")
    tests = compare_groups(df, "label", value="mass_frac")
    lesion = tests[tests["region"] == "lesion"].iloc[0]
    assert lesion["p_adj"] < 0.05 and lesion["effect_size"] != 0
    assert isinstance(tests, pd.DataFrame) and {"p_raw", "p_adj", "ci_low", "ci_high"} <= set(tests.columns)


def test_regionset_3d_basics():
    masks = np.zeros((2, 4, 5, 6), bool)
    masks[0, :2], masks[1, 2:] = True, True
    rs = RegionSet(["top", "bottom"], masks, ndim=3, spacing=(1.0, 2.0, 3.0))
    assert rs.shared and rs.shape == (4, 5, 6) and rs["top"].shape == (4, 5, 6)
    assert rs.area_fractions().tolist() == [0.5, 0.5]
    assert rs.select(["bottom"]).names == ("bottom",) and rs.expand(3).masks.shape == (3, 2, 4, 5, 6)
    with pytest.raises(RegionError, match="resize"):
        rs.resize((2, 2))
    with pytest.raises(RegionError, match="D x H x W"):
        RegionSet(["a"], np.zeros((4, 5), bool), ndim=3)


def test_regionset_apply_with_a_volume_geometry_matches_label_regions():
    vol = draw_volume(6, shape=(20, 24, 24))
    image = vol.as_image()
    pre = VolumePreprocess(shape=12, spacing=25.0, window=VOLUME_WINDOW)
    source_regions = label_regions(vol.labels, vol.names, image=image)
    moved = source_regions.apply(pre.geometry(image))
    direct = label_regions(vol.labels, vol.names, image=image, preprocess=pre)
    assert moved == direct and moved.spacing == pytest.approx(direct.spacing)
