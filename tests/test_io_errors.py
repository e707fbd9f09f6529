"""Bad input: each case raises an XaikitError subclass whose message names the file and says what to do."""
from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.pixels import get_decoder

from xaikit._util import sha256_file
from xaikit.errors import ArgumentError, ImageReadError, XaikitError
from xaikit.io import dicom as dicom_module
from xaikit.io import read_image


def _copy(name: str, tmp_path, new_name: str | None = None):
    dst = tmp_path / (new_name or name)
    shutil.copy(get_testdata_file(name), dst)
    return dst


def _raises(path, error=ImageReadError, match: str | None = None, **kwargs) -> str:
    before = sha256_file(path) if path.exists() and path.is_file() else None
    with pytest.raises(error) as info:
        read_image(path, **kwargs)
    message = str(info.value)
    assert isinstance(info.value, XaikitError) and str(path) in message
    if match:
        assert match in message, message
    if before is not None:
        assert sha256_file(path) == before  # reading never changes the file
    return message


@pytest.mark.parametrize("name", ["missing.dcm", "missing.png", "missing.nii.gz", "missing"])
def test_missing_file(tmp_path, name):
    _raises(tmp_path / name, match="no such file")


def test_directory_and_empty_file(tmp_path):
    _raises(tmp_path, match="directory")
    (tmp_path / "empty.dcm").write_bytes(b"")
    _raises(tmp_path / "empty.dcm", match="empty file")


def test_unknown_extension_lists_supported(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "x.bmp")
    message = _raises(tmp_path / "x.bmp", match="unknown extension")
    assert all(ext in message for ext in (".dcm", ".nii.gz", ".png", ".jpeg", ".tiff", ".npy"))


def test_truncated_dicom(tmp_path):
    _raises(_copy("MR_truncated.dcm", tmp_path), match="truncated")
    half = tmp_path / "half.dcm"
    data = open(get_testdata_file("CT_small.dcm"), "rb").read()
    half.write_bytes(data[: len(data) // 2])
    _raises(half)
    head = tmp_path / "head.dcm"
    head.write_bytes(data[:140])  # preamble and a few bytes: no data set
    _raises(head, match="truncated or not DICOM")


def test_not_dicom_at_all(tmp_path):
    (tmp_path / "text.dcm").write_bytes(b"hello, this is plain text and not DICOM\n" * 20)
    _raises(tmp_path / "text.dcm", match="not DICOM")


@pytest.mark.parametrize("name, kind", [("rtplan.dcm", "RT Plan Storage"), ("test-SR.dcm", "SR Storage"),
                                        ("waveform_ecg.dcm", "ECG")])
def test_dicom_without_pixel_data(tmp_path, name, kind):
    _raises(_copy(name, tmp_path), match="no pixel data")
    assert kind in _raises(_copy(name, tmp_path))


def test_compressed_dicom_without_installed_decoder(tmp_path):
    name = "MR_small_jpeg_ls_lossless.dcm"
    if get_decoder(pydicom.uid.JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    message = _raises(_copy(name, tmp_path), match="JPEG-LS Lossless Image Compression")
    assert "1.2.840.10008.1.2.4.80" in message and "pip install pylibjpeg pylibjpeg-libjpeg" in message


def test_compressed_dicom_when_no_handler_is_available(tmp_path, monkeypatch):
    """RLE decodes with numpy alone, so simulate an environment where no plugin is available."""

    class NoPlugins:
        is_available = False

    monkeypatch.setattr(dicom_module, "get_decoder", lambda syntax: NoPlugins())
    message = _raises(_copy("MR_small_RLE.dcm", tmp_path), match="RLE Lossless")
    assert "1.2.840.10008.1.2.5" in message and "pylibjpeg-rle" in message and "python-gdcm" in message


def test_compressed_dicom_whose_installed_decoder_fails(tmp_path):
    path = _copy("JPEG-lossy.dcm", tmp_path)  # 12-bit JPEG Extended: Pillow cannot, pylibjpeg/gdcm can
    try:
        pydicom.dcmread(path).pixel_array
    except RuntimeError:
        message = _raises(path, match="JPEG Extended")
        assert "1.2.840.10008.1.2.4.51" in message and "pylibjpeg" in message
    else:
        pytest.skip("a 12-bit JPEG decoder is installed here")


def test_nifti_with_nan_and_inf_counts_bad_voxels(tmp_path, rng):
    data = rng.normal(size=(4, 5, 6)).astype(np.float32)
    data[0, 0, 0], data[1, 2, 3], data[3, 4, 5] = np.nan, np.inf, -np.inf
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "bad.nii.gz")
    _raises(tmp_path / "bad.nii.gz", match="3 of 120")


def test_npy_bad_arrays(tmp_path):
    cases = {
        "nan.npy": (np.array([[1.0, np.nan], [0.0, 1.0]]), "1 of 4"),
        "empty.npy": (np.zeros((0, 5)), "empty"),
        "flat.npy": (np.arange(5.0), "1D"),
        "four_d.npy": (np.zeros((2, 2, 2, 2)), "4D"),
        "text.npy": (np.array([["a", "b"], ["c", "d"]]), "dtype"),
    }
    for name, (array, expected) in cases.items():
        np.save(tmp_path / name, array)
        _raises(tmp_path / name, match=expected)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    _raises(tmp_path / "objects.npy", match="allow_pickle=False")


def test_five_dimensional_nifti(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2, 2, 2), np.float32), np.eye(4)), tmp_path / "five.nii")
    _raises(tmp_path / "five.nii", match="5D")


def test_corrupt_raster_files(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    _raises(tmp_path / "junk.png")
    buffer = tmp_path / "cut.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(buffer)
    buffer.write_bytes(buffer.read_bytes()[:200])
    _raises(buffer)


def test_bad_arguments_name_the_argument(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(ArgumentError, match="rgb="):
        read_image(tmp_path / "a.png", rgb="rainbow")
    with pytest.raises(ArgumentError, match="volume="):
        read_image(tmp_path / "a.png", volume=1)
    _raises(_copy("CT_small.dcm", tmp_path), error=ArgumentError, match="frame=2", frame=2)
