"""The NiiVue 3-D viewer's Python side: NIfTI bytes built in memory, the overlay NiiVue receives, the crosshair
position, the region label volume. The drawing itself is checked in Chromium (tests/test_browser.py)."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from xaikit.errors import ArgumentError
from xaikit.io import MedicalImage, read_nifti
from xaikit.io.nifti import dhw_to_ras, nifti_bytes
from xaikit.regions import RegionSet
from xaikit.viz.saliency import display_map
from xaikit.widgets.niivue import MIN_SHOWN, VolumeViewer, crosshair_fraction, label_volume

pytest.importorskip("ipyniivue")

RNG = np.random.default_rng(0)
AFFINE = np.array([[0.0, 0.0, -0.8, 40.0], [0.0, -0.8, 0.0, 30.0], [2.5, 0.0, 0.0, -10.0], [0, 0, 0, 1]])


def _from_bytes(data: bytes) -> nib.Nifti1Image:
    return nib.Nifti1Image.from_bytes(data)


def test_nifti_bytes_read_back_as_the_kit_reads_files(tmp_path):
    vol = RNG.normal(size=(5, 6, 7)).astype(np.float32)
    data = nifti_bytes(vol, AFFINE)
    path = tmp_path / "v.nii"
    path.write_bytes(data)
    back = read_nifti(path)
    np.testing.assert_array_equal(back.array, vol)
    np.testing.assert_allclose(back.affine, AFFINE)
    assert _from_bytes(nifti_bytes(vol > 0, AFFINE, dtype=np.uint8)).get_data_dtype() == np.uint8
    with pytest.raises(ArgumentError, match="D x H x W"):
        nifti_bytes(vol[0], AFFINE)


@pytest.mark.parametrize("affine", [AFFINE, dhw_to_ras((2.0, 1.0, 1.5)), np.diag([1.0, 2.0, 3.0, 1.0])])
def test_crosshair_fraction_matches_nibabels_canonical_reorientation(affine):
    shape, point = (5, 6, 7), (1, 4, 2)
    canonical = nib.as_closest_canonical(nib.Nifti1Image(np.zeros(shape, np.float32), affine))
    ijk = np.linalg.inv(canonical.affine) @ affine @ np.array([*point, 1.0])
    expected = (ijk[:3] + 0.5) / np.array(canonical.shape)
    np.testing.assert_allclose(crosshair_fraction(point, shape, affine), expected)


def test_label_volume_first_region_wins():
    masks = np.zeros((2, 3, 4, 5), bool)
    masks[0, 0] = True
    masks[1, :2] = True
    labels, names = label_volume(RegionSet(["a", "b"], masks, ndim=3), (3, 4, 5))
    assert names == ["a", "b"] and labels.dtype == np.uint8
    assert (labels[0] == 1).all() and (labels[1] == 2).all() and (labels[2] == 0).all()
    with pytest.raises(ArgumentError, match="shared 3-D RegionSet"):
        label_volume(RegionSet(["a"], masks[:1, 0], ndim=2), (3, 4, 5))


def test_viewer_sends_the_kits_display_scaling_threshold_and_opacity():
    vol = MedicalImage(RNG.random((6, 7, 8)).astype(np.float32), affine=AFFINE, window=(0.5, 1.0))
    m = RNG.normal(size=(6, 7, 8))
    viewer = VolumeViewer(vol, m, sign="signed", alpha=0.4, threshold_pct=80)
    scan, overlay = viewer.nv.volumes
    np.testing.assert_allclose(_from_bytes(scan.data).affine, AFFINE)
    assert (scan.cal_min, scan.cal_max) == (0.0, 1.0)  # the MedicalImage's window
    shown = np.asarray(_from_bytes(overlay.data).dataobj)
    np.testing.assert_allclose(shown, display_map(m.reshape(6, -1), "signed", 99.5).reshape(m.shape), atol=1e-6)
    assert overlay.cal_min == pytest.approx(np.percentile(np.abs(shown), 80), rel=1e-5)
    assert (overlay.colormap, overlay.colormap_negative, overlay.opacity) == ("warm", "winter", 0.4)
    viewer.set_opacity(0.9)
    viewer.set_threshold(0)
    assert viewer.map_volume.opacity == 0.9 and viewer.map_volume.cal_min == MIN_SHOWN
    viewer.set_sign("positive")
    positive = np.asarray(_from_bytes(viewer.map_volume.data).dataobj)
    assert positive.min() >= 0 and viewer.map_volume.colormap_negative == ""
    with pytest.raises(ArgumentError, match="differs from the volume"):
        viewer.set_map(m[:, :, :4])


def test_explorer_controls_drive_the_viewer():
    from xaikit.widgets.volume import VolumeExplorer

    vol = RNG.random((6, 7, 8))
    masks = np.stack([vol > 0.5, vol < 0.1])
    explorer = VolumeExplorer(vol, {"a": RNG.normal(size=vol.shape), "b": RNG.random(vol.shape)},
                              regions=RegionSet(["hi", "lo"], masks, ndim=3))
    viewer = explorer.viewer
    assert [v.name for v in viewer.nv.volumes] == ["scan.nii", "regions.nii", "map.nii"]
    explorer.alpha.value = 0.2
    explorer.d.value = 1
    assert viewer.map_volume.opacity == 0.2
    assert viewer.nv.scene.crosshair_pos == crosshair_fraction(explorer.point, vol.shape, viewer.affine)
    explorer.method.value = "b"
    np.testing.assert_allclose(np.asarray(_from_bytes(viewer.map_volume.data).dataobj),
                               display_map(explorer.maps["b"].reshape(6, -1), "signed", 99.5).reshape(vol.shape),
                               atol=1e-6)
    assert VolumeExplorer(vol, viewer=False).viewer is None
