"""Fuzz the readers: damaged, truncated and lying files for every format read_image and deidentify accept.

Every case must end in a correct MedicalImage (float32, 2D/3D, finite) or an XaikitError naming the file,
under a time and memory cap (fuzz_helpers.limits): never a raw library exception, a hang or a huge allocation.
"""
from __future__ import annotations

import gzip
import shutil
import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from xaikit.io import MedicalImage, deidentify, read_image

from fuzz_helpers import Tally, assert_clean, run_case

RNG_SEED = 15
DICOM_SEEDS = ("CT_small.dcm", "MR_small_RLE.dcm", "SC_rgb_rle_2frame.dcm", "examples_palette.dcm")


def _valid_image(img: MedicalImage) -> None:
    assert isinstance(img, MedicalImage), type(img)
    assert img.array.dtype == np.float32 and img.array.ndim in (2, 3), (img.array.dtype, img.array.shape)
    assert np.isfinite(img.array).all(), "non-finite pixels returned"
    assert all(np.isfinite(s) and s > 0 for s in img.spacing), f"spacing {img.spacing}"


# ---------------------------------------------------------------------------------------------- seeds
def _raster_seeds(folder: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    out = []
    Image.fromarray(rng.integers(0, 255, (16, 12), dtype=np.uint8)).save(folder / "grey8.png")
    Image.fromarray(rng.integers(0, 65535, (16, 12), dtype=np.uint16)).save(folder / "grey16.png")
    Image.fromarray(rng.integers(0, 255, (16, 12, 3), dtype=np.uint8)).save(folder / "rgb.jpg", quality=90)
    pages = [Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)) for _ in range(3)]
    pages[0].save(folder / "stack.tif", save_all=True, append_images=pages[1:])
    np.save(folder / "arr.npy", rng.normal(size=(6, 7)).astype(np.float32))
    out += [folder / n for n in ("grey8.png", "grey16.png", "rgb.jpg", "stack.tif", "arr.npy")]
    return out


def _nifti_seeds(folder: Path) -> list[Path]:
    img = nib.Nifti1Image(np.arange(4 * 5 * 3, dtype=np.int16).reshape(4, 5, 3), np.diag([-2.0, 2.0, 3.0, 1.0]))
    img.header.set_slope_inter(0.5, 1.0)
    nib.save(img, folder / "vol.nii")
    nib.save(img, folder / "vol.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((3, 4, 2, 2), np.float32), np.eye(4)), folder / "four.nii")
    return [folder / "vol.nii", folder / "vol.nii.gz", folder / "four.nii"]


def _dicom_seeds(folder: Path) -> list[Path]:
    out = []
    for name in DICOM_SEEDS:
        shutil.copy(get_testdata_file(name), folder / name)
        out.append(folder / name)
    return out


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("fuzz_seeds")
    return _raster_seeds(folder) + _nifti_seeds(folder) + _dicom_seeds(folder)


# ---------------------------------------------------------------------------------------------- mutations
def _truncations(data: bytes) -> list[tuple[str, bytes]]:
    cuts = sorted({c for c in (1, 10, 100, 131, 132, 200, 348, 352) if c < len(data)} |
                  {int(len(data) * f) for f in (0.25, 0.5, 0.9, 0.99)})
    return [(f"cut{c}", data[:c]) for c in cuts if c > 0]


def _flips(data: bytes, rng: np.random.Generator, n: int = 10) -> list[tuple[str, bytes]]:
    out = []
    for k in range(n):
        buf = bytearray(data)
        span = min(len(buf), 512) if k % 2 == 0 else len(buf)   # half the flips hit the header
        for pos in rng.integers(0, span, rng.integers(1, 5)):
            buf[pos] = int(rng.integers(0, 256))
        out.append((f"flip{k}", bytes(buf)))
    return out


def _suffix(path: Path) -> str:
    return ".nii.gz" if path.name.endswith(".nii.gz") else path.suffix


@pytest.mark.parametrize("kind", ["truncate", "flip"])
def test_damaged_files_of_every_format(seeds, tmp_path, kind):
    rng = np.random.default_rng(RNG_SEED)
    tally = Tally()
    for seed in seeds:
        data = seed.read_bytes()
        variants = _truncations(data) if kind == "truncate" else _flips(data, rng)
        for label, content in variants:
            path = tmp_path / f"{seed.stem.replace('.', '_')}_{label}{_suffix(seed)}"
            path.write_bytes(content)
            run_case(tally, path.name, lambda: read_image(path), _valid_image, names=str(path))
    assert_clean(tally)


# ---------------------------------------------------------------------------------------------- lying headers
def _nifti_header_mutations() -> list[tuple[str, dict]]:
    return [("dim0_1", {"dim0": 1}), ("dim0_0", {"dim0": 0}), ("dim0_8", {"dim0": 8}), ("dim0_neg", {"dim0": -1}),
            ("dim_zero", {"dims": (0, 5, 3)}), ("dim_neg", {"dims": (-4, 5, 3)}), ("dim_huge", {"dims": (32767, 5, 3)}),
            ("dtype_0", {"datatype": 0}), ("dtype_binary", {"datatype": 1}), ("dtype_rgb", {"datatype": 128}),
            ("dtype_complex", {"datatype": 32}), ("dtype_bogus", {"datatype": 255}), ("dtype_f128", {"datatype": 1536}),
            ("bitpix", {"bitpix": 3}), ("offset_0", {"vox_offset": 0.0}), ("offset_10", {"vox_offset": 10.0}),
            ("offset_huge", {"vox_offset": 1e12}), ("offset_neg", {"vox_offset": -352.0}),
            ("pixdim_nan", {"pixdim": np.nan}), ("pixdim_zero", {"pixdim": 0.0}), ("pixdim_neg", {"pixdim": -2.0}),
            ("pixdim_inf", {"pixdim": np.inf}), ("slope_nan", {"scl_slope": np.nan}),
            ("slope_inf", {"scl_slope": np.inf}), ("slope_zero", {"scl_slope": 0.0}),
            ("inter_inf", {"scl_inter": np.inf}),
            ("quatern_nan", {"qform_code": 1, "sform_code": 0, "quatern_b": np.nan}),
            ("srow_nan", {"sform_code": 1, "srow_x": [np.nan] * 4}),
            ("srow_zero", {"sform_code": 1, "srow_x": [0.0] * 4}),
            ("qfac_weird", {"qform_code": 1, "sform_code": 0, "pixdim0": 7.0}), ("units", {"xyzt_units": 255}),
            ("sizeof_hdr", {"sizeof_hdr": 12}), ("magic", {"magic": b"xx1\x00"}), ("cal_nan", {"cal_max": np.nan})]


def _mutated_nifti(header_bytes: bytes, change: dict) -> bytes:
    hdr = bytearray(header_bytes)
    fields = nib.Nifti1Header.template_dtype
    view = np.frombuffer(hdr, dtype=fields, count=1).copy()
    for key, value in change.items():
        if key == "dim0":
            view["dim"][0][0] = value
        elif key == "dims":
            view["dim"][0][1:4] = value
        elif key == "pixdim":
            view["pixdim"][0][1] = value
        elif key == "pixdim0":
            view["pixdim"][0][0] = value
        else:
            view[key] = value
    return view.tobytes()


def test_nifti_headers_that_lie(seeds, tmp_path):
    tally = Tally()
    for seed in [s for s in seeds if s.name in ("vol.nii", "vol.nii.gz", "four.nii")]:
        raw = gzip.decompress(seed.read_bytes()) if seed.name.endswith(".gz") else seed.read_bytes()
        for label, change in _nifti_header_mutations():
            content = _mutated_nifti(raw[:348], change) + raw[348:]
            path = tmp_path / f"{seed.name.split('.')[0]}_{label}{_suffix(seed)}"
            path.write_bytes(gzip.compress(content) if seed.name.endswith(".gz") else content)
            run_case(tally, path.name, lambda: read_image(path), _valid_image, names=str(path))
    assert_clean(tally)


_DICOM_EDITS = [
    ("rows0", {"Rows": 0}), ("rows_big", {"Rows": 65535}), ("cols_big", {"Columns": 65535}),
    ("bits0", {"BitsAllocated": 0}), ("bits1", {"BitsAllocated": 1}), ("bits7", {"BitsAllocated": 7}),
    ("bits12", {"BitsAllocated": 12}), ("bits64", {"BitsAllocated": 64}), ("stored_gt", {"BitsStored": 40}),
    ("stored0", {"BitsStored": 0}), ("highbit", {"HighBit": 99}), ("spp0", {"SamplesPerPixel": 0}),
    ("spp3", {"SamplesPerPixel": 3}), ("spp7", {"SamplesPerPixel": 7}), ("frames0", {"NumberOfFrames": "0"}),
    ("frames_neg", {"NumberOfFrames": "-3"}), ("frames_big", {"NumberOfFrames": "1000000000"}),
    ("frames_2", {"NumberOfFrames": "2"}), ("photo_bogus", {"PhotometricInterpretation": "BOGUS"}),
    ("photo_m1", {"PhotometricInterpretation": "MONOCHROME1"}),
    ("photo_pal", {"PhotometricInterpretation": "PALETTE COLOR"}),
    ("photo_ybr", {"PhotometricInterpretation": "YBR_FULL"}), ("photo_rgb", {"PhotometricInterpretation": "RGB"}),
    ("pixrep2", {"PixelRepresentation": 2}), ("slope0", {"RescaleSlope": "0"}), ("slope_nan", {"RescaleSlope": "nan"}),
    ("slope_inf", {"RescaleSlope": "inf"}), ("slope_text", {"RescaleSlope": "abc"}),
    ("wc_text", {"WindowCenter": "abc"}),
    ("ww0", {"WindowWidth": "0"}), ("ww_neg", {"WindowWidth": "-5"}), ("spacing0", {"PixelSpacing": ["0", "0"]}),
    ("spacing_neg", {"PixelSpacing": ["-1", "-1"]}), ("spacing_text", {"PixelSpacing": ["a", "b"]}),
    ("spacing_one", {"PixelSpacing": ["1"]}), ("spacing_nan", {"PixelSpacing": ["nan", "nan"]}),
    ("thick_text", {"SliceThickness": "x"}), ("ts_unknown", {"TransferSyntaxUID": "1.2.3.4"}),
    ("ts_jpeg", {"TransferSyntaxUID": "1.2.840.10008.1.2.4.50"}),
    ("ts_rle", {"TransferSyntaxUID": "1.2.840.10008.1.2.5"}),
    ("ts_deflate", {"TransferSyntaxUID": "1.2.840.10008.1.2.1.99"}), ("ts_empty", {"TransferSyntaxUID": ""}),
    ("no_pixels", {"PixelData": None}), ("empty_pixels", {"PixelData": b""}),
    ("short_pixels", {"PixelData": b"\x00\x01"}),
    ("no_sop", {"SOPInstanceUID": None}), ("no_sopclass", {"SOPClassUID": None}), ("no_rows", {"Rows": None}),
    ("modality_lut", {"ModalityLUTSequence": "broken"}), ("voi_lut", {"VOILUTSequence": "broken"}),
]


def _edit(ds: pydicom.Dataset, key: str, value) -> None:
    if key == "TransferSyntaxUID":
        ds.file_meta.TransferSyntaxUID = value
    elif value is None:
        if key in ds:
            del ds[key]
    elif value == "broken":
        item = pydicom.Dataset()
        item.LUTDescriptor = [0, 0, 99]
        item.LUTData = b"\x01"
        setattr(ds, key, pydicom.Sequence([item]))
    else:
        setattr(ds, key, value)


def test_dicom_headers_that_lie(seeds, tmp_path):
    tally = Tally()
    for seed in [s for s in seeds if s.suffix == ".dcm"]:
        for label, change in _DICOM_EDITS:
            ds = pydicom.dcmread(seed)
            path = tmp_path / f"{seed.stem}_{label}.dcm"
            try:
                with pydicom.config.disable_value_validation():
                    for key, value in change.items():
                        _edit(ds, key, value)
                    ds.save_as(path, enforce_file_format=False)
            except (ValueError, TypeError, OverflowError, struct.error):   # pydicom refuses to write it: no case
                continue
            run_case(tally, path.name, lambda: read_image(path), _valid_image, names=str(path))
            run_case(tally, "deid:" + path.name, lambda: deidentify(path, tmp_path / "anon.dcm"), names=str(path))
    assert_clean(tally)


def _png(width: int, height: int, depth: int, colour: int, idat: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_png_headers_that_lie(tmp_path):
    tally = Tally()
    small = zlib.compress(b"\x00" * (16 * 17))
    bomb = zlib.compress(b"\x00" * (20001 * 200))   # 4 MB of zeros in ~4 kB
    cases = {"w0": (0, 16, 8, 0, small), "h0": (16, 0, 8, 0, small), "huge": (60000, 60000, 8, 0, small),
             "bomb_rows": (20000, 20000, 8, 0, bomb), "depth3": (16, 16, 3, 0, small), "colour5": (16, 16, 8, 5, small),
             "short_idat": (16, 16, 8, 0, small[:10]), "wrong_size": (64, 64, 8, 0, small),
             "palette": (16, 16, 8, 3, small),
             "depth16": (16, 16, 16, 0, small), "not_zlib": (16, 16, 8, 0, b"garbage" * 10)}
    for label, args in cases.items():
        path = tmp_path / f"{label}.png"
        path.write_bytes(_png(*args))
        run_case(tally, path.name, lambda: read_image(path), _valid_image, names=str(path))
    assert_clean(tally)


def test_npy_headers_that_lie(tmp_path):
    tally = Tally()
    np.save(tmp_path / "base.npy", np.zeros((4, 5), np.float32))
    base = (tmp_path / "base.npy").read_bytes()
    edits = {"obj": ("'<f4'", "'|O'"), "complex": ("'<f4'", "'<c8'"), "void": ("'<f4'", "'|V4'"),
             "str": ("'<f4'", "'<U1'"), "neg": ("(4, 5)", "(-4, 5)"), "fortran": ("False", "True"),
             "huge": ("(4, 5)", "(99999, 99999)"), "ndim5": ("(4, 5)", "(1, 1, 1, 4, 5)"),
             "empty": ("(4, 5)", "(0, 5)"),
             "bad_dict": ("'descr'", "'descX'"), "f16": ("'<f4'", "'<f2'"), "bool": ("'<f4'", "'|b1'"),
             "text": ("{", "[")}
    for label, (old, new) in edits.items():
        path = tmp_path / f"{label}.npy"
        path.write_bytes(base.replace(old.encode(), new.encode(), 1))
        run_case(tally, path.name, lambda: read_image(path), _valid_image, names=str(path))
    assert_clean(tally)
