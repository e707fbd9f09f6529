"""Volumes: VolumePreprocess geometry and world coordinates, phantom volume sets, 3D models, checkpoints."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from xaikit import XaikitError
from xaikit.checkpoint import load_checkpoint, save_checkpoint
from xaikit.data import VolumePreprocess, preprocess_from_dict
from xaikit.errors import ArgumentError
from xaikit.io import MedicalImage
from xaikit.models import VOLUME_ARCHITECTURES, build_model, classifier_layer, is_volume_model
from xaikit.phantom import VOLUME_WINDOW, VolumeSetDataset, draw_volume, draw_volume_set


def _oblique_affine(spacing, angle=0.3, origin=(10.0, -20.0, 5.0)):
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag(spacing)
    aff[:3, 3] = origin
    return aff


def _world(aff, ijk):
    return (aff @ np.append(np.asarray(ijk, float), 1.0))[:3]


def test_geometry_keeps_world_coordinates_for_an_oblique_affine():
    spacing = (3.0, 1.5, 1.0)
    img = MedicalImage(np.zeros((20, 30, 40), np.float32), spacing=spacing, affine=_oblique_affine(spacing))
    pre = VolumePreprocess(shape=(16, 16, 16), spacing=2.0, normalize="none")
    geo = pre.geometry(img)
    assert geo.out_spacing == pytest.approx((2.0, 2.0, 2.0))
    for o in [(0, 0, 0), (5, 7, 11), (15, 15, 15)]:
        src = np.asarray(geo.zoom) * (np.asarray(o) + np.asarray(geo.offset))  # the voxel sampled
        assert _world(geo.out_affine, o) == pytest.approx(_world(img.affine, src))


def test_resampled_blob_lands_on_the_same_world_point():
    spacing = (2.5, 1.0, 1.5)
    vol = np.zeros((24, 60, 40), np.float32)
    vol[10, 37, 13] = 1.0
    from scipy import ndimage

    vol = ndimage.gaussian_filter(vol, (2.0, 5.0, 3.3))  # ~5 mm blob, isotropic in mm
    img = MedicalImage(vol, spacing=spacing, affine=_oblique_affine(spacing, angle=-0.4))
    pre = VolumePreprocess(shape=(48, 48, 48), spacing=1.25, normalize="none")  # whole blob in view
    x, _ = pre(img)
    geo = pre.geometry(img)
    peak_src = _world(img.affine, ndimage.center_of_mass(vol))
    peak_out = _world(geo.out_affine, ndimage.center_of_mass(x[0].numpy()))
    assert np.linalg.norm(peak_out - peak_src) < 0.1  # mm; voxels are 1-2.5 mm


def test_crop_pad_and_inverse_round_trip():
    rng = np.random.default_rng(0)
    vol = ndimage_smooth(rng.normal(size=(12, 20, 26)))
    img = MedicalImage(vol, spacing=(1.0, 1.0, 1.0))
    pre = VolumePreprocess(shape=(16, 16, 16), normalize="none")  # no resampling: pad D, crop H and W
    x, _ = pre(img)
    geo = pre.geometry(img)
    assert geo.offset == (-2, 2, 5)
    assert np.allclose(x[0, 2:14].numpy(), vol[:, 2:18, 5:21], atol=1e-6)
    back = geo.inverse(x[0].numpy())
    assert np.allclose(back[:, 2:18, 5:21], vol[:, 2:18, 5:21], atol=1e-6)
    assert np.all(back[:, :2] == 0) and np.all(back[:, :, :5] == 0)  # outside the field of view


def ndimage_smooth(a):
    from scipy import ndimage

    return ndimage.gaussian_filter(a, 1.0).astype(np.float32)


def test_masks_follow_the_image_and_labels_stay_integer():
    vol = draw_volume(3, shape=(24, 32, 32))
    pre = VolumePreprocess(shape=24, spacing=12.0, window=VOLUME_WINDOW)
    x, masks = pre(vol.as_image(), vol.masks())
    assert x.shape == (1, 24, 24, 24) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert set(masks) == set(vol.masks()) and all(m.dtype == torch.bool for m in masks.values())
    lab = pre.geometry(vol.as_image()).labels(vol.labels)
    assert lab.dtype == vol.labels.dtype and set(np.unique(lab)) <= set(np.unique(vol.labels))
    assert np.array_equal(lab == 6, masks["lesion"].numpy())
    # lungs are dark, the lesion brighter than lung, in the preprocessed volume
    lung = masks["left_lung"] | masks["right_lung"]
    assert float(x[0][masks["lesion"]].mean()) > float(x[0][lung].mean()) + 0.1


def test_serialization_and_checkpoint(tmp_path):
    pre = VolumePreprocess(shape=(16, 20, 24), spacing=(2.0, 1.5, 1.5), normalize="percentile", percentiles=(1, 99))
    assert VolumePreprocess.from_dict(pre.to_dict()) == pre
    assert preprocess_from_dict(pre.to_dict()) == pre
    model = build_model("small_cnn3d", num_classes=2)
    path = save_checkpoint(tmp_path / "m.pt", model, classes=["normal", "lesion"], preprocess=pre)
    ckpt = load_checkpoint(path, preprocess=pre)
    assert ckpt.preprocess == pre and isinstance(ckpt.preprocess, VolumePreprocess)
    with pytest.raises(XaikitError, match="differs"):
        load_checkpoint(path, preprocess=VolumePreprocess(shape=16))


@pytest.mark.parametrize("kwargs, message", [
    ({"shape": (16, 16)}, "shape"), ({"spacing": -1.0}, "spacing"), ({"normalize": "zscore"}, "normalize"),
    ({"window": (0, 0)}, "width"), ({"percentiles": (50, 10)}, "percentiles"),
])
def test_bad_settings(kwargs, message):
    with pytest.raises(ArgumentError, match=message):
        VolumePreprocess(**kwargs)


def test_bad_volumes_name_the_file(tmp_path):
    pre = VolumePreprocess(shape=8, normalize="none")
    sheared = np.eye(4)
    sheared[0, 1] = 0.5
    img = MedicalImage(np.zeros((8, 8, 8)), spacing=(1.0, np.hypot(1, 0.5), 1.0), affine=sheared,
                       source=tmp_path / "scan.nii.gz")
    with pytest.raises(ArgumentError, match=r"scan\.nii\.gz.*sheared"):
        pre(img)
    aniso = MedicalImage(np.zeros((8, 8, 8)), spacing=(5.0, 0.7, 0.7), source=tmp_path / "thick.nii")
    with pytest.raises(ArgumentError, match=r"thick\.nii.*spacing="):
        pre(aniso)
    VolumePreprocess(shape=8, spacing=2.0, normalize="none")(aniso)  # resampling makes it fine
    wrong = MedicalImage(np.zeros((8, 8, 8)), spacing=(2.0, 2.0, 2.0), affine=np.eye(4), source=tmp_path / "x.nii")
    with pytest.raises(ArgumentError, match=r"x\.nii.*disagree"):
        pre(wrong)
    with pytest.raises(ArgumentError, match="4-D"):
        pre(np.zeros((3, 8, 8, 8)))
    with pytest.raises(ArgumentError, match="label map"):
        pre.geometry(np.zeros((8, 8, 8))).labels(np.zeros((8, 8, 9), int))


def test_volume_set_is_deterministic_and_grouped_by_patient():
    a, b = (draw_volume_set(10, seed=4, shape=(16, 16, 16), n_patients=6),
            draw_volume_set(10, seed=4, shape=(16, 16, 16), n_patients=6))
    assert a.table.equals(b.table) and np.array_equal(a[3].image, b[3].image)
    assert a.table["patient_id"].nunique() == 6 and a.table["label"].sum() == 5
    ds = VolumeSetDataset(a, VolumePreprocess(shape=16, window=VOLUME_WINDOW))
    s = ds[0]
    assert s["image"].shape == (1, 16, 16, 16) and s["id"] == "vol0000"
    assert bool(s["masks"]["lesion"].any()) == bool(s["label"])  # every volume has every mask (empty if absent)


@pytest.mark.parametrize("arch", VOLUME_ARCHITECTURES)
def test_3d_models(arch):
    torch.manual_seed(0)
    model = build_model(arch, num_classes=3, in_channels=1).eval()
    assert is_volume_model(model) is True
    with torch.no_grad():
        assert model(torch.rand(2, 1, 16, 16, 16)).shape == (2, 3)
    assert model.xaikit_arch == arch and model.get_submodule(classifier_layer(model)).out_features == 3
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv3d))
    assert first.in_channels == 1
    assert not any(getattr(m, "inplace", False) for m in model.modules())
    assert is_volume_model(build_model("small_cnn", num_classes=2)) is False


# ------------------------------------------------------------------------------------- maps written back
def _linear_world(aff, shape):
    """f(world) = x + 2y - 0.5z + 3 at every voxel of a grid (trilinear interpolation reproduces it exactly)."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    world = idx @ aff[:3, :3].T + aff[:3, 3]
    return (world @ np.array([1.0, 2.0, -0.5]) + 3.0).reshape(shape).astype(np.float32)


@pytest.mark.parametrize("source_kind", ["nifti_oblique_las", "dicom_series"])
def test_map_written_back_lands_on_the_source_world_coordinates(tmp_path, source_kind):
    import nibabel as nib

    from xaikit.io import read_volume, write_dicom_series

    vol = draw_volume(5, shape=(20, 24, 28))
    if source_kind == "nifti_oblique_las":
        # a file in LAS voxel order with a rotated affine, written with nibabel directly (not through xaikit)
        xyz = np.ascontiguousarray(vol.image.transpose(2, 1, 0))
        aff = _oblique_affine((1.5, 1.25, 2.0), angle=0.2)
        aff[:, 0] *= -1
        src_file = tmp_path / "scan.nii.gz"
        nib.save(nib.Nifti1Image(xyz, aff), src_file)
        source = read_volume(src_file)
    else:
        write_dicom_series(vol.as_image(), tmp_path / "series", uid_seed="test-series")
        source = read_volume(tmp_path / "series")
        # slices are stacked along the slice normal, inferior to superior: the phantom's own layout, so the
        # series reads back as the array that was drawn (a model trained in memory sees files as it was trained)
        assert np.allclose(source.affine, vol.affine, atol=1e-4) and source.shape == vol.image.shape
        assert np.allclose(source.array, vol.image, atol=0.02)
    pre = VolumePreprocess(shape=(16, 16, 16), spacing=2.5 if source_kind.startswith("nifti") else 16.0,
                           window=VOLUME_WINDOW)
    geo = pre.geometry(source)
    model_map = _linear_world(geo.out_affine, geo.out_shape)  # a "map" defined by world position
    out = pre.write_map(model_map, source, tmp_path / "map.nii.gz")
    back = read_volume(out)
    assert np.allclose(back.affine, source.affine, atol=1e-5) and back.shape == source.shape
    expected = _linear_world(source.affine, source.shape)
    # voxels well inside the model's field of view (trilinear interpolation is exact there)
    inside = geo.inverse(np.ones(geo.out_shape, np.float32)) > 0.999
    assert inside.sum() > 2000
    assert np.allclose(back.array[inside], expected[inside], atol=1e-3)
    if source_kind == "nifti_oblique_las":
        raw_src, raw_map = nib.load(src_file), nib.load(out)
        assert raw_map.shape == raw_src.shape and np.allclose(raw_map.affine, raw_src.affine)
        assert raw_map.header["descrip"].item() == b""


def test_bad_volume_files(tmp_path):
    import nibabel as nib

    from xaikit.io import read_volume, write_dicom_series

    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8, 3), np.float32), np.eye(4)), tmp_path / "fmri.nii.gz")
    with pytest.raises(ArgumentError, match=r"fmri\.nii\.gz is a 4-D NIfTI holding 3 volumes.*frame="):
        read_volume(tmp_path / "fmri.nii.gz")
    assert read_volume(tmp_path / "fmri.nii.gz", frame=2).shape == (8, 8, 8)
    vol = draw_volume(1, shape=(16, 16, 16))
    paths = write_dicom_series(vol.as_image(), tmp_path / "gap", uid_seed="gap")
    paths[7].unlink()
    with pytest.raises(XaikitError, match=r"gap.*not evenly spaced"):
        read_volume(tmp_path / "gap")
    image = vol.as_image()
    with pytest.raises(ArgumentError, match=r"map has shape \(4, 4, 4\)"):
        from xaikit.io import write_map_nifti

        write_map_nifti(np.zeros((4, 4, 4)), image, tmp_path / "m.nii.gz")
    assert not (tmp_path / "m.nii.gz").exists()
