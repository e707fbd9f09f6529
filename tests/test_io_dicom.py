"""DICOM reading against pydicom's own LUT functions on pydicom's bundled files, and secondary capture writing."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian

from xaikit.errors import ArgumentError
from xaikit.io import MedicalImage, read_image, write_dicom
from xaikit.io.secondary_capture import MULTIFRAME_WORD_SC, SECONDARY_CAPTURE

BT601 = np.array([0.299, 0.587, 0.114])


def _decodable(name: str) -> bool:
    syntax = pydicom.dcmread(get_testdata_file(name)).file_meta.TransferSyntaxUID
    return not syntax.is_compressed or get_decoder(syntax).is_available


def _reference(name: str) -> tuple[Dataset, np.ndarray]:
    ds = pydicom.dcmread(get_testdata_file(name))
    return ds, apply_modality_lut(ds.pixel_array, ds)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm",
                                  "MR_small_implicit.dcm", "MR_small_jp2klossless.dcm", "JPEG2000.dcm",
                                  "693_J2KI.dcm", "examples_overlay.dcm"])
def test_values_equal_pydicom_modality_lut(name):
    if not _decodable(name):
        pytest.skip(f"no decoder installed for {name}")
    ds, expected = _reference(name)
    img = read_image(get_testdata_file(name))
    assert np.array_equal(img.array, expected.astype(np.float32))
    assert img.modality == ds.Modality
    assert img.spacing == tuple(float(s) for s in ds.PixelSpacing) and img.meta["spacing_unit"] == "mm"


def test_ct_is_in_hounsfield_units():
    ds, _ = _reference("CT_small.dcm")
    img = read_image(get_testdata_file("CT_small.dcm"))
    assert float(ds.RescaleIntercept) == -1024.0
    assert np.array_equal(img.array, ds.pixel_array.astype(np.float64) - 1024.0)


def test_compressed_rle_decodes_to_the_uncompressed_pixels():
    plain = read_image(get_testdata_file("MR_small.dcm"))
    rle = read_image(get_testdata_file("MR_small_RLE.dcm"))
    assert np.array_equal(plain.array, rle.array) and rle.meta["transfer_syntax"] == "RLE Lossless"


def test_window_is_first_window_center_width_and_display_matches_voi_lut():
    name = "MR_small.dcm"
    ds, modality = _reference(name)
    img = read_image(get_testdata_file(name))
    assert img.window == (float(ds.WindowCenter), float(ds.WindowWidth))
    voi = apply_voi_lut(modality, ds)
    y_min, y_max = -(2 ** (ds.BitsStored - 1)), 2 ** (ds.BitsStored - 1) - 1  # signed, no rescale
    reference = (voi - y_min) / (y_max - y_min)
    # DICOM's LINEAR function shifts by half a pixel and uses width - 1 (PS3.3 C.11.2.1.2.1).
    assert np.abs(img.display() - reference).max() <= 2.0 / (float(ds.WindowWidth) - 1)


def test_multiple_windows_take_the_first():
    ds = pydicom.dcmread(get_testdata_file("examples_overlay.dcm"))
    img = read_image(get_testdata_file("examples_overlay.dcm"))
    assert img.window == (float(ds.WindowCenter[0]), float(ds.WindowWidth[0]))


def _variant(tmp_path, name: str, edit) -> str:
    ds = pydicom.dcmread(get_testdata_file(name))
    edit(ds)
    path = tmp_path / f"variant_{name}"
    ds.save_as(path)
    return str(path)


def test_monochrome1_is_inverted_with_its_window(tmp_path):
    def window(ds):
        ds.WindowCenter, ds.WindowWidth = 40, 400

    def mono1(ds):
        window(ds)
        ds.PhotometricInterpretation = "MONOCHROME1"

    mono2_img = read_image(_variant(tmp_path, "CT_small.dcm", window))
    path = _variant(tmp_path, "CT_small.dcm", mono1)
    img = read_image(path)
    ds = pydicom.dcmread(path)
    # signed 16-bit storage, intercept -1024: the modality output range is [-32768, 32767] - 1024
    assert (int(ds.PixelRepresentation), int(ds.BitsStored), float(ds.RescaleIntercept)) == (1, 16, -1024.0)
    lo, hi = -32768.0 - 1024.0, 32767.0 - 1024.0
    assert np.array_equal(img.array, (lo + hi - apply_modality_lut(ds.pixel_array, ds)).astype(np.float32))
    assert img.window == (lo + hi - 40.0, 400.0)
    np.testing.assert_allclose(img.display(), 1.0 - mono2_img.display(), atol=1e-6)


def test_voi_lut_sequence_gives_a_linear_window(tmp_path):
    def voi_sequence(ds):
        del ds.WindowCenter, ds.WindowWidth
        item = Dataset()
        item.add_new("LUTDescriptor", "US", [1001, 200, 12])
        item.add_new("LUTData", "US", [int(round(v)) for v in np.linspace(0, 4095, 1001)])
        ds.VOILUTSequence = Sequence([item])

    path = _variant(tmp_path, "MR_small.dcm", voi_sequence)
    img = read_image(path)
    assert img.window == (700.0, 1000.0)
    ds = pydicom.dcmread(path)
    reference = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds) / 4095.0
    assert np.abs(img.display() - reference).max() <= 2e-3


def test_multiframe_volume_spacing_and_frame_selection():
    ds, expected = _reference("rtdose.dcm")
    vol = read_image(get_testdata_file("rtdose.dcm"))
    assert vol.shape == (15, 10, 10) and np.array_equal(vol.array, expected.astype(np.float32))
    assert vol.spacing == (5.0, 10.0, 10.0)  # GridFrameOffsetVector steps of 5 mm, PixelSpacing 10 mm
    one = read_image(get_testdata_file("rtdose.dcm"), frame=3)
    assert one.shape == (10, 10) and np.array_equal(one.array, vol.array[3]) and one.meta["frame"] == 3
    with pytest.raises(ArgumentError, match="rtdose.dcm"):
        read_image(get_testdata_file("rtdose.dcm"), frame=15)


def test_rgb_dicom_to_gray_and_keep():
    ds = pydicom.dcmread(get_testdata_file("SC_rgb_rle.dcm"))
    img = read_image(get_testdata_file("SC_rgb_rle.dcm"))
    np.testing.assert_allclose(img.array, ds.pixel_array @ BT601, atol=1e-3)
    kept = read_image(get_testdata_file("SC_rgb_rle.dcm"), rgb="keep")
    assert kept.shape == (3,) + ds.pixel_array.shape[:2] and kept.meta["channels"] == "RGB"
    frames = read_image(get_testdata_file("SC_rgb_rle_2frame.dcm"))
    assert frames.shape == (2, 100, 100)


def test_palette_colour_dicom_to_gray():
    ds = pydicom.dcmread(get_testdata_file("examples_palette.dcm"))
    img = read_image(get_testdata_file("examples_palette.dcm"))
    np.testing.assert_allclose(img.array, apply_color_lut(ds.pixel_array, ds) @ BT601, rtol=1e-6, atol=1e-2)


def test_dicom_without_extension_and_with_odd_extension(tmp_path):
    data = open(get_testdata_file("CT_small.dcm"), "rb").read()
    for name in ("IM0001", "IM0001.1"):
        (tmp_path / name).write_bytes(data)
        assert np.array_equal(read_image(tmp_path / name).array, read_image(get_testdata_file("CT_small.dcm")).array)


def test_bare_dataset_without_preamble_or_file_meta(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    bare = tmp_path / "bare.dcm"
    with open(bare, "wb") as fh:  # implicit VR little endian data set only, as old ACR-NEMA style files
        pydicom.filewriter.write_dataset(pydicom.filebase.DicomFileLike(fh), ds, ImplicitVRLittleEndian)
    assert bare.read_bytes()[128:132] != b"DICM"
    assert np.array_equal(read_image(bare).array, read_image(get_testdata_file("CT_small.dcm")).array)


# --- writing -----------------------------------------------------------------------------------------


def test_write_dicom_float_round_trip_within_quantization(tmp_path, rng):
    img = MedicalImage(rng.normal(0, 300, (32, 40)), spacing=(0.5, 0.7), window=(40.0, 400.0), modality="CT")
    path = write_dicom(img, tmp_path / "ct.dcm", uid_seed="t")
    ds = pydicom.dcmread(path)
    back = read_image(path)
    assert ds.SOPClassUID == SECONDARY_CAPTURE and ds.BitsStored == 16 and ds.PhotometricInterpretation == "MONOCHROME2"
    assert np.abs(back.array - img.array).max() <= float(ds.RescaleSlope) / 2 + 1e-4
    assert back.window == (40.0, 400.0) and back.spacing == (0.5, 0.7) and back.modality == "CT"
    np.testing.assert_array_equal(back.array, apply_modality_lut(ds.pixel_array, ds).astype(np.float32))


def test_write_dicom_integers_exact_and_monochrome1(tmp_path, rng):
    values = rng.integers(-1024, 3000, (16, 16)).astype(np.float32)
    img = MedicalImage(values, window=(40.0, 400.0))
    assert np.array_equal(read_image(write_dicom(img, tmp_path / "a.dcm")).array, values)
    path = write_dicom(img, tmp_path / "m1.dcm", photometric="MONOCHROME1")
    back = read_image(path)
    assert pydicom.dcmread(path).PhotometricInterpretation == "MONOCHROME1"
    assert np.array_equal(back.array, values) and back.window == (40.0, 400.0)


def test_write_dicom_forced_rescale_and_small_window(tmp_path, rng):
    values = rng.random((8, 8)).astype(np.float32)
    path = write_dicom(MedicalImage(values, window=(0.5, 0.8)), tmp_path / "r.dcm", rescale=(1e-4, 0.0))
    ds = pydicom.dcmread(path)
    assert float(ds.RescaleSlope) == 1e-4 and ds.VOILUTFunction == "LINEAR_EXACT"
    assert np.abs(read_image(path).array - values).max() <= 0.5e-4 + 1e-6
    apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)  # pydicom accepts the written window
    with pytest.raises(ArgumentError, match="rescale"):
        write_dicom(MedicalImage(values * 1e3), tmp_path / "bad.dcm", rescale=(1e-4, 0.0))


def test_write_dicom_volume_and_deterministic_bytes(tmp_path, rng):
    vol = MedicalImage(rng.integers(0, 4000, (5, 12, 10)).astype(np.float32), spacing=(2.5, 0.5, 0.6))
    first = write_dicom(vol, tmp_path / "v1.dcm", uid_seed="seed")
    second = write_dicom(vol, tmp_path / "v2.dcm", uid_seed="seed")
    assert first.read_bytes() == second.read_bytes()
    other = pydicom.dcmread(write_dicom(vol, tmp_path / "v3.dcm", uid_seed="other"))
    ds = pydicom.dcmread(first)
    assert ds.SOPClassUID == MULTIFRAME_WORD_SC and ds.NumberOfFrames == 5
    assert other.StudyInstanceUID != ds.StudyInstanceUID
    back = read_image(first)
    assert np.array_equal(back.array, vol.array) and back.spacing == (2.5, 0.5, 0.6)
    assert read_image(first, frame=4).shape == (12, 10)
