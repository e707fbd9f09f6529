"""Three-plane figures, MIPs and the volume explorer widget."""
from __future__ import annotations

import numpy as np
import pytest

from xaikit.errors import ArgumentError
from xaikit.phantom import draw_volume
from xaikit.viz.volume import mip_view, three_plane_view, volume_planes


def test_three_planes_cut_through_the_point_with_crosshairs():
    rng = np.random.default_rng(0)
    vol, m = rng.random((6, 8, 10)), rng.normal(size=(6, 8, 10))
    fig = three_plane_view(vol, m, point=(2, 3, 4), sign="signed", clip_pct=None)
    planes = {t.name: np.asarray(t.z, float) for t in fig.data}
    scale = np.abs(m).max()
    assert np.allclose(planes["axial map"], m[2] / scale)
    assert np.allclose(planes["coronal map"], m[:, 3, :] / scale)
    assert np.allclose(planes["sagittal map"], m[:, :, 4] / scale)
    assert np.allclose(planes["axial image"], (vol[2] - vol.min()) / (vol.max() - vol.min()))
    assert len(fig.layout.shapes) == 6  # two crosshair lines per panel
    assert [a.text for a in fig.layout.annotations] == ["axial 2", "coronal 3", "sagittal 4"]


def test_aspect_follows_spacing_and_superior_is_up():
    vol = draw_volume(0, shape=(16, 20, 24)).as_image()
    vol.affine[2, 0] = abs(vol.affine[2, 0])  # d runs towards the head: coronal/sagittal rows are flipped
    fig = three_plane_view(vol, point=(3, 10, 12))
    sd, sh, sw = vol.spacing
    assert fig.layout.yaxis.scaleratio == pytest.approx(sh / sw)
    assert fig.layout.yaxis2.scaleratio == pytest.approx(sd / sw)
    planes = volume_planes(np.arange(16)[:, None, None] * np.ones((16, 20, 24)), (3, 10, 12), superior_up=True)
    assert planes["coronal"][0, 0] == 15  # the last (most superior) slice on top


def test_a_preprocessed_tensor_is_drawn_superior_up_with_its_geometry_affine():
    vol = draw_volume(0, shape=(16, 20, 24)).as_image()
    vol.affine[2, 0] = abs(vol.affine[2, 0])
    ramp = np.arange(16, dtype=float)[:, None, None] * np.ones((16, 20, 24))  # value = slice index d
    bare = three_plane_view(ramp, ramp, point=(3, 10, 12), clip_pct=None)  # no affine: d = 0 on top
    up = three_plane_view(ramp, ramp, point=(3, 10, 12), clip_pct=None, affine=vol.affine)
    for plane in ("coronal", "sagittal"):
        assert np.asarray(bare.data[[t.name for t in bare.data].index(f"{plane} map")].z)[0, 0] == 0
        assert np.asarray(up.data[[t.name for t in up.data].index(f"{plane} map")].z)[0, 0] == 1  # slice 15 on top
    mip = mip_view(ramp, volume=ramp, affine=vol.affine, clip_pct=None)
    assert np.asarray(mip.data[[t.name for t in mip.data].index("coronal MIP")].z)[0, 0] == 1
    with pytest.raises(ArgumentError, match="affine must be a 4 x 4"):
        three_plane_view(ramp, affine=np.eye(3))


def test_threshold_hides_weak_values_and_mip_keeps_sign():
    r = np.random.default_rng(2).normal(size=(5, 6, 7))
    fig = three_plane_view(np.zeros((5, 6, 7)), r, point=(2, 3, 4), threshold_pct=50, clip_pct=None)
    axial = np.asarray(fig.data[1].z, dtype=float)
    # the threshold is a percentile over the whole volume, so the three planes share it
    assert np.array_equal(np.isnan(axial), np.abs(r[2]) < np.median(np.abs(r)))
    m = np.zeros((5, 6, 7))
    m[2, 3, 4], m[1, 1, 1] = 1.0, -2.0
    mip = mip_view(m, sign="signed", clip_pct=None)
    axial_mip = np.asarray(mip.data[0].z, float)
    assert axial_mip[1, 1] == -1.0 and axial_mip[3, 4] == 0.5
    with pytest.raises(ArgumentError, match="differs"):
        three_plane_view(np.zeros((5, 6, 7)), np.zeros((5, 6, 6)))
    with pytest.raises(ArgumentError, match="inside the volume"):
        three_plane_view(np.zeros((5, 6, 7)), point=(5, 0, 0))


def test_volume_explorer_redraws_on_slider_changes():
    from xaikit.widgets.volume import VolumeExplorer

    rng = np.random.default_rng(1)
    vol = draw_volume(1, shape=(16, 16, 16)).as_image()
    explorer = VolumeExplorer(vol, {"a": rng.normal(size=(16, 16, 16)), "b": rng.random((16, 16, 16))})
    explorer.d.value = 3
    assert explorer.figure.layout.annotations[0].text == "axial 3"
    before = np.asarray(explorer.figure.data[1].z, float)
    explorer.method.value = "b"
    assert not np.allclose(np.nan_to_num(before), np.nan_to_num(np.asarray(explorer.figure.data[1].z, float)))
    explorer.level.value = -500.0
    static = explorer.figure_now()
    assert np.allclose(np.asarray(static.data[0].z, float), np.asarray(explorer.figure.data[0].z, float))


def test_overlay_of_a_volume_points_to_the_three_plane_figure():
    import xaikit
    from xaikit.errors import ArgumentError
    from xaikit.io import MedicalImage

    assert xaikit.read_volume is xaikit.io.read_volume  # a front-door name, like read_image
    volume = MedicalImage(np.random.default_rng(0).random((6, 8, 8)).astype(np.float32), spacing=(1.0, 1.0, 1.0))
    for image, saliency in ((volume, np.zeros((4, 4, 4))), (np.zeros((8, 8)), np.zeros((6, 8, 8)))):
        with pytest.raises(ArgumentError, match=r"overlay draws one 2D image.*three_plane_view"):
            xaikit.overlay(image, saliency)
