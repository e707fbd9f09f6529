"""PNG/JPEG/TIFF and .npy reading, PNG writing, and the read_image dispatch."""
from __future__ import annotations

import glob
import os

import numpy as np
import pytest
from PIL import Image

from xaikit.errors import ArgumentError, ImageWriteError
from xaikit.io import MedicalImage, image_format, read_image, write_png

BT601 = np.array([0.299, 0.587, 0.114])


def test_png_8bit_values_and_window(tmp_path, rng):
    pixels = rng.integers(0, 256, (32, 48), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert img.array.dtype == np.float32 and np.array_equal(img.array, pixels)
    assert img.window == (127.5, 255.0) and img.spacing == (1.0, 1.0)
    assert img.meta["bit_depth"] == 8 and img.meta["format"] == "PNG" and img.meta["spacing_unit"] == "pixel"


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_values_exact(tmp_path, rng, suffix):
    pixels = rng.integers(0, 65536, (20, 30), dtype=np.uint16)
    Image.fromarray(pixels).save(tmp_path / f"a{suffix}")
    img = read_image(tmp_path / f"a{suffix}")
    assert np.array_equal(img.array, pixels.astype(np.float32))
    assert img.meta["bit_depth"] == 16


def test_float_tiff_exact(tmp_path, rng):
    pixels = rng.normal(size=(16, 16)).astype(np.float32)
    Image.fromarray(pixels).save(tmp_path / "f.tiff")
    assert np.array_equal(read_image(tmp_path / "f.tiff").array, pixels)


def test_multipage_tiff_is_a_volume_and_frame_picks_a_page(tmp_path, rng):
    pages = [rng.integers(0, 256, (12, 10), dtype=np.uint8) for _ in range(3)]
    Image.fromarray(pages[0]).save(tmp_path / "v.tif", save_all=True,
                                   append_images=[Image.fromarray(p) for p in pages[1:]])
    vol = read_image(tmp_path / "v.tif")
    assert vol.shape == (3, 12, 10) and np.array_equal(vol.array, np.stack(pages))
    assert np.array_equal(read_image(tmp_path / "v.tif", frame=2).array, pages[2])
    with pytest.raises(ArgumentError, match="v.tif"):
        read_image(tmp_path / "v.tif", frame=3)


def test_rgb_to_gray_is_bt601_luminance(tmp_path, rng):
    rgb = rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    img = read_image(tmp_path / "c.png")
    np.testing.assert_allclose(img.array, rgb @ BT601, rtol=0, atol=1e-4)
    # Pillow's own "L" conversion uses the same weights (rounded to integers).
    pil_gray = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float64)
    assert np.abs(img.array - pil_gray).max() <= 0.51
    kept = read_image(tmp_path / "c.png", rgb="keep")
    assert kept.shape == (3, 24, 20) and np.array_equal(kept.array, np.moveaxis(rgb, -1, 0))
    assert kept.meta["channels"] == "RGB"


def test_grey_stored_as_rgb_reads_unchanged_and_alpha_is_ignored(tmp_path, rng):
    grey = rng.integers(0, 256, (10, 10), dtype=np.uint8)
    rgba = np.dstack([grey, grey, grey, rng.integers(0, 256, (10, 10), dtype=np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "g.png")
    np.testing.assert_allclose(read_image(tmp_path / "g.png").array, grey, atol=1e-4)


def test_palette_png_uses_palette_colours(tmp_path, rng):
    rgb = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    palette_img = Image.fromarray(rgb).quantize(colors=8)
    palette_img.save(tmp_path / "p.png")
    expected = np.asarray(palette_img.convert("RGB")) @ BT601
    np.testing.assert_allclose(read_image(tmp_path / "p.png").array, expected, atol=1e-4)


def test_jpeg_reads_close_to_source(tmp_path):
    ramp = np.tile(np.linspace(0, 255, 64), (64, 1)).astype(np.uint8)
    Image.fromarray(ramp).save(tmp_path / "r.jpg", quality=100)
    img = read_image(tmp_path / "r.jpg")
    assert img.meta["format"] == "JPEG" and np.abs(img.array - ramp).max() <= 3


def test_npy_exact_and_3d(tmp_path, rng):
    vol = rng.normal(size=(4, 8, 6))
    np.save(tmp_path / "v.npy", vol)
    img = read_image(tmp_path / "v.npy")
    assert img.shape == (4, 8, 6) and np.array_equal(img.array, vol.astype(np.float32))


def test_dispatch_by_content_without_extension(tmp_path, rng):
    pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "noext", format="PNG")
    assert image_format(tmp_path / "noext") == "raster"
    assert np.array_equal(read_image(tmp_path / "noext").array, pixels)


@pytest.mark.parametrize("bits", [8, 16])
def test_write_png_applies_window(tmp_path, rng, bits):
    img = MedicalImage(rng.normal(0, 100, (20, 24)), window=(10.0, 300.0))
    path = write_png(img, tmp_path / "w.png", bits=bits)
    back = read_image(path)
    expected = np.rint(img.display().astype(np.float64) * (2**bits - 1))
    assert np.array_equal(back.array, expected) and back.meta["bit_depth"] == bits


def test_write_png_8bit_data_round_trips_exactly(tmp_path, rng):
    pixels = rng.integers(0, 256, (16, 16)).astype(np.float32)
    path = write_png(MedicalImage(pixels), tmp_path / "x.png", window=(127.5, 255.0))
    assert np.array_equal(read_image(path).array, pixels)
    with open(path, "rb") as fh:
        first = fh.read()
    write_png(MedicalImage(pixels), path, window=(127.5, 255.0))
    with open(path, "rb") as fh:
        assert fh.read() == first  # deterministic bytes


def test_write_png_refuses_volumes_and_bad_bits(tmp_path):
    with pytest.raises(ArgumentError, match="2D"):
        write_png(MedicalImage(np.zeros((2, 4, 4))), tmp_path / "v.png")
    with pytest.raises(ArgumentError, match="bits"):
        write_png(MedicalImage(np.zeros((4, 4))), tmp_path / "v.png", bits=12)


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = write_png(MedicalImage(np.eye(8) * 255), tmp_path / "keep.png", window=(127.5, 255))
    before = path.read_bytes()

    def broken_save(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(ImageWriteError, match="keep.png"):
        write_png(MedicalImage(np.zeros((8, 8))), path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["keep.png"]


REAL_CXR = sorted(glob.glob("/work/shared/real_cxr/NORMAL/*.jpeg"))


@pytest.mark.skipif(not REAL_CXR, reason="real chest X-rays not available on this machine")
def test_real_chest_xray_jpeg():
    img = read_image(REAL_CXR[0])
    with Image.open(REAL_CXR[0]) as ref:
        expected = np.asarray(ref.convert("L"), dtype=np.float32) if ref.mode != "L" else np.asarray(ref)
    assert img.ndim == 2 and img.shape == expected.shape and img.meta["bit_depth"] == 8
    assert np.abs(img.array - expected).max() <= 0.51
    assert 0.0 <= img.display().min() and img.display().max() <= 1.0
