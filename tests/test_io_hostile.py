"""Readers that do not trust headers (issue 15): claimed sizes, bombs, odd geometry, odd DICOM, permissions."""
from __future__ import annotations

import contextlib
import gzip
import os
import resource
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from xaikit.errors import ImageReadError, XaikitError
from xaikit.io import deidentify, read_image, write_nifti


def _raises(path, match: str, **kwargs) -> str:
    with pytest.raises(ImageReadError) as info:
        read_image(path, **kwargs)
    message = str(info.value)
    assert str(path) in message and match in message, message
    return message


@contextlib.contextmanager
def _memory_cap(gib: float):
    """Address-space cap for this process while the block runs: a reader that believes a header would die."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (int(gib * 2**30), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _nifti_header(shape, dtype=np.uint8) -> bytes:
    header = nib.Nifti1Header()
    header.set_data_dtype(dtype)
    header.set_data_shape(shape)
    return header.binaryblock + b"\0" * 4


@pytest.mark.parametrize("shape", [(1000, 1000, 1000), (32767, 32767, 32767)])
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_header_claiming_a_huge_volume_is_refused_before_reading(tmp_path, shape, suffix):
    raw = _nifti_header(shape) + b"\0" * 10
    path = tmp_path / f"claim{suffix}"
    path.write_bytes(gzip.compress(raw) if suffix.endswith("gz") else raw)   # 54-byte .nii.gz: the file
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with _memory_cap(8):
        _raises(path, "over the limit")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline < 200 * 1024   # KiB: nothing allocated


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_shorter_than_its_header_claims_is_refused_before_reading(tmp_path, suffix):
    raw = _nifti_header((200, 200, 200), np.float32) + b"\0" * 1000        # claims 32 MB, holds 1 kB
    path = tmp_path / f"short{suffix}"
    path.write_bytes(gzip.compress(raw) if suffix.endswith("gz") else raw)
    _raises(path, "file holds only")


def test_nifti_limit_can_be_raised_and_data_stay_float32(tmp_path):
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    img = nib.Nifti1Image(data, np.eye(4))
    img.header.set_slope_inter(0.5, -3.0)
    nib.save(img, tmp_path / "v.nii.gz")
    _raises(tmp_path / "v.nii.gz", "over the limit of 100", max_voxels=100)
    out = read_image(tmp_path / "v.nii.gz", max_voxels=120)
    assert out.array.dtype == np.float32 and out.shape == (6, 5, 4)
    assert np.array_equal(out.array, (data * 0.5 - 3.0).astype(np.float32)[::-1, ::-1, :].transpose(2, 1, 0))


def test_one_dimensional_nifti(tmp_path):
    nib.save(nib.Nifti1Image(np.arange(10, dtype=np.float32), np.eye(4)), tmp_path / "signal.nii")
    _raises(tmp_path / "signal.nii", "1D")   # was a raw IndexError


def test_nifti_with_a_zero_affine(tmp_path):
    header = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)).header
    header["qform_code"], header["sform_code"] = 0, 1
    for row in ("srow_x", "srow_y", "srow_z"):
        header[row] = [0, 0, 0, 0]
    (tmp_path / "zero.nii").write_bytes(header.binaryblock + b"\0" * 4 + np.ones(64, np.float32).tobytes())
    _raises(tmp_path / "zero.nii", "singular")   # was nibabel's OrientationError


def test_nifti_round_trip_still_exact(tmp_path, rng):
    volume = rng.normal(size=(5, 6, 7)).astype(np.float32)
    write_nifti(volume, tmp_path / "r.nii.gz")
    assert np.array_equal(read_image(tmp_path / "r.nii.gz").array, volume)


def test_multi_page_tiff_is_measured_page_by_page_before_decoding(tmp_path):
    pages = [Image.fromarray(np.full((64, 64), i, np.uint8)) for i in range(5)]
    pages[0].save(tmp_path / "stack.tif", save_all=True, append_images=pages[1:], compression="tiff_deflate")
    message = _raises(tmp_path / "stack.tif", "decompression bomb", max_voxels=3 * 64 * 64)
    assert "frame=" in message
    assert read_image(tmp_path / "stack.tif", frame=4, max_voxels=64 * 64).array.max() == 4
    assert read_image(tmp_path / "stack.tif").shape == (5, 64, 64)


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_png_decompression_bomb_is_wrapped(tmp_path):
    (tmp_path / "bomb.png").write_bytes(_png_claiming(30000, 30000))
    message = _raises(tmp_path / "bomb.png", "decompression bomb")   # was PIL.Image.DecompressionBombError
    assert "MAX_IMAGE_PIXELS" in message


def test_npy_header_claiming_more_than_the_file_holds(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((64, 64), np.float32))
    data = (tmp_path / "a.npy").read_bytes()
    (tmp_path / "a.npy").write_bytes(data.replace(b"(64, 64)", b"(64, 65)"))
    _raises(tmp_path / "a.npy", "truncated")
    np.save(tmp_path / "b.npy", np.zeros((8, 8), np.uint8))
    (tmp_path / "b.npy").write_bytes((tmp_path / "b.npy").read_bytes().replace(b"(8, 8)", b"(99999, 99999)"))
    _raises(tmp_path / "b.npy", "over the limit")


def test_dicom_with_an_unknown_transfer_syntax(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.3.4.5"
    ds.save_as(tmp_path / "odd.dcm", enforce_file_format=False)
    _raises(tmp_path / "odd.dcm", "not a transfer syntax")   # was a raw ValueError


def test_dicom_claiming_huge_frames(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.NumberOfFrames = 60000
    ds.save_as(tmp_path / "frames.dcm")
    _raises(tmp_path / "frames.dcm", "over the limit")


def test_deidentify_without_sop_instance_uid(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    media = ds.file_meta.MediaStorageSOPInstanceUID
    del ds.SOPInstanceUID
    ds.save_as(tmp_path / "nosop.dcm", enforce_file_format=False)
    out = pydicom.dcmread(deidentify(tmp_path / "nosop.dcm", tmp_path / "out.dcm", uid_salt="k"))  # was AttributeError
    assert out.file_meta.MediaStorageSOPInstanceUID != media and "SOPInstanceUID" not in out


@contextlib.contextmanager
def _unreadable(path):
    """``path`` unreadable for this process: chmod 000, and as root also drop the effective uid."""
    os.chmod(path, 0)
    root = os.geteuid() == 0
    try:
        if root:
            os.setegid(65534)
            os.seteuid(65534)
        yield
    finally:
        if root:
            os.seteuid(0)
            os.setegid(0)
        os.chmod(path, 0o644)


@pytest.mark.parametrize("name", ["x.png", "x.dcm", "x.nii", "x.npy", "noext"])
def test_permission_denied_names_the_file_and_what_to_do(tmp_path, name):
    folder = Path(tempfile.mkdtemp(prefix="xaikit-perm-"))   # world-searchable, unlike pytest's tmp_path
    os.chmod(folder, 0o755)
    path = folder / name
    path.write_bytes(b"\0" * 400)
    with _unreadable(path):
        with pytest.raises(XaikitError) as info:
            read_image(path)
    assert isinstance(info.value, ImageReadError) and "permission denied" in str(info.value)
    assert str(path) in str(info.value)
    shutil.rmtree(folder)
