"""NIfTI reading (scaling, canonical orientation, (D, H, W) layout, 4D) and writing, with nibabel's test files."""
from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path

from xaikit.errors import ArgumentError
from xaikit.io import MedicalImage, read_image, write_nifti

ANATOMICAL = os.path.join(data_path, "anatomical.nii")
EXAMPLE_4D = os.path.join(data_path, "example4d.nii.gz")


def _assert_world_consistent(img: MedicalImage, source: nib.Nifti1Image, data: np.ndarray, rng, n: int = 50):
    """Every sampled (d, h, w) voxel maps through img.affine to the world point of the source voxel
    holding the same value: orientation and layout are checked without trusting the reader's formula."""
    shape = img.shape if img.ndim == 3 else (1,) + img.shape
    inverse = np.linalg.inv(source.affine)
    for d, h, w in zip(*(rng.integers(0, s, n) for s in shape)):
        world = img.affine @ np.array([d, h, w, 1.0])
        ijk = np.rint((inverse @ world)[:3]).astype(int)
        value = img.array[d, h, w] if img.ndim == 3 else img.array[h, w]
        assert value == np.float32(data[tuple(ijk)])


def test_bundled_anatomical_orientation_spacing_and_values(rng):
    source = nib.load(ANATOMICAL)
    img = read_image(ANATOMICAL)
    assert source.shape == (33, 41, 25) and "".join(nib.aff2axcodes(source.affine)) == "LAS"
    assert img.shape == (25, 41, 33) and img.spacing == (2.0, 2.0, 2.0)
    assert img.meta["original_axcodes"] == "LAS" and img.meta["format"] == "NIfTI-1"
    _assert_world_consistent(img, source, source.get_fdata(), rng)
    # (D, H, W) = (inferior->superior, anterior->posterior, patient right->left)
    directions = img.affine[:3, :3] / np.abs(img.affine[:3, :3]).max(axis=0)
    np.testing.assert_allclose(directions, [[0, 0, -1], [0, -1, 0], [1, 0, 0]], atol=1e-6)


def test_4d_default_volume_warns_and_volume_picks(rng):
    source = nib.load(EXAMPLE_4D)
    data = source.get_fdata()
    with pytest.warns(UserWarning, match="volume 0"):
        first = read_image(EXAMPLE_4D)
    second = read_image(EXAMPLE_4D, volume=1)
    assert first.shape == (24, 96, 128) and second.meta["volume"] == 1 and second.meta["n_volumes"] == 2
    _assert_world_consistent(first, source, data[..., 0], rng)
    _assert_world_consistent(second, source, data[..., 1], rng)
    np.testing.assert_allclose(second.spacing, (2.2, 2.0, 2.0), rtol=1e-5)
    with pytest.raises(ArgumentError, match="example4d"):
        read_image(EXAMPLE_4D, volume=2)


@pytest.mark.parametrize("axcodes", ["RAS", "LPS", "PSR", "ILA"])
def test_any_orientation_reads_to_the_same_layout(tmp_path, rng, axcodes):
    data = rng.normal(size=(6, 7, 8))
    ras = nib.Nifti1Image(data, np.diag([1.5, 2.0, 2.5, 1.0]))
    target = nib.orientations.axcodes2ornt(axcodes)
    transform = nib.orientations.ornt_transform(nib.orientations.io_orientation(ras.affine), target)
    reoriented = ras.as_reoriented(transform)
    nib.save(reoriented, tmp_path / "o.nii")
    img = read_image(tmp_path / "o.nii")
    reference = read_image_from(ras, tmp_path / "ras.nii")
    assert np.array_equal(img.array, reference.array) and np.allclose(img.affine, reference.affine)
    assert img.spacing == (2.5, 2.0, 1.5)
    _assert_world_consistent(img, reoriented, np.asanyarray(reoriented.dataobj), rng)


def read_image_from(nifti, path):
    nib.save(nifti, path)
    return read_image(path)


def test_scaling_and_units(tmp_path, rng):
    stored = rng.integers(-100, 100, (4, 5, 6)).astype(np.int16)
    nifti = nib.Nifti1Image(stored, np.eye(4))
    nifti.header.set_slope_inter(2.0, -5.0)
    nifti.header.set_xyzt_units("meter")
    nib.save(nifti, tmp_path / "s.nii.gz")
    img = read_image(tmp_path / "s.nii.gz")
    np.testing.assert_array_equal(np.sort(img.array.ravel()), np.sort(2.0 * stored.ravel() - 5.0))
    assert img.spacing == (1000.0, 1000.0, 1000.0) and img.meta["xyz_unit"] == "meter"


def test_2d_nifti_reads_as_2d(tmp_path, rng):
    nib.save(nib.Nifti1Image(rng.normal(size=(9, 7)), np.eye(4)), tmp_path / "flat.nii")
    img = read_image(tmp_path / "flat.nii")
    assert img.ndim == 2 and img.shape == (7, 9)


def test_write_nifti_round_trip_and_deterministic_bytes(tmp_path):
    img = read_image(EXAMPLE_4D, volume=1)
    path = write_nifti(img, tmp_path / "v.nii.gz")
    back = read_image(path)
    assert np.array_equal(back.array, img.array) and np.allclose(back.affine, img.affine)
    assert back.window == img.window and back.spacing == pytest.approx(img.spacing)
    first = path.read_bytes()
    write_nifti(img, path)
    assert path.read_bytes() == first


def test_write_nifti_plain_array_and_2d(tmp_path, rng):
    vol = rng.normal(size=(3, 4, 5)).astype(np.float32)
    back = read_image(write_nifti(vol, tmp_path / "a.nii"))
    assert np.array_equal(back.array, vol)
    flat = MedicalImage(rng.normal(size=(4, 6)), spacing=(0.5, 0.25))
    back2 = read_image(write_nifti(flat, tmp_path / "f.nii"))
    assert back2.ndim == 2 and np.array_equal(back2.array, flat.array) and back2.spacing == (0.5, 0.25)
    with pytest.raises(ArgumentError, match="affine"):
        write_nifti(vol, tmp_path / "b.nii", affine=np.eye(3))
    with pytest.raises(ArgumentError, match=".nii"):
        write_nifti(vol, tmp_path / "b.img")


# ---------------------------------------------------------------- issue 23: a byte cap and one float32 copy
def test_a_volume_whose_read_would_pass_the_byte_cap_is_refused_first(tmp_path):
    from xaikit.errors import ImageReadError

    nib.save(nib.Nifti1Image(np.zeros((100, 100, 100), np.float64), np.eye(4)), tmp_path / "f64.nii")
    # 10**6 voxels is within max_voxels=10**6, but 8-byte voxels + the float32 result need 12 MB > 6 x 10**6 bytes
    with pytest.raises(ImageReadError, match=r"f64\.nii: reading this volume .* needs .* GiB at its peak"):
        read_image(tmp_path / "f64.nii", max_voxels=10**6)
    assert read_image(tmp_path / "f64.nii", max_voxels=2 * 10**6).shape == (100, 100, 100)


def test_a_large_volume_is_read_with_one_float32_copy(tmp_path):
    import tracemalloc

    stored = np.zeros((260, 260, 260), np.uint8)   # above WINDOW_SAMPLE voxels, as a real 800^3 CT is
    stored[60:200, 80:180, 100:160] = 200
    nifti = nib.Nifti1Image(stored, np.diag([0.7, 0.7, 1.5, 1.0]))
    nifti.header.set_slope_inter(0.5, -3.0)
    nib.save(nifti, tmp_path / "big.nii.gz")
    tracemalloc.start()
    try:
        img = read_image(tmp_path / "big.nii.gz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    result = img.array.nbytes
    # stored voxels (1/4 of the result) + the result + a finiteness mask (1/4): was about 3x the result
    assert peak < 1.7 * result, f"peak {peak / 2**20:.0f} MB for a {result / 2**20:.0f} MB result"
    assert img.array.flags["C_CONTIGUOUS"] and img.array.dtype == np.float32
    reference = nib.as_closest_canonical(nib.load(tmp_path / "big.nii.gz")).get_fdata(dtype=np.float32)
    np.testing.assert_array_equal(img.array, reference[::-1, ::-1, :].transpose(2, 1, 0))
